/**
 * One relay per data dir, as an operator meets it: a second relay on the same dir refuses to
 * start and names the one that holds it; after the holder is killed with SIGKILL, a new relay
 * starts at once on the dir, with its data intact.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import {
  removeDir,
  spawnRelay,
  startRelay,
  tempDir,
  waitForEventStatus,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

const relays: RelayHandle[] = [];
let dataDir = '';

after(async () => {
  for (const r of relays) await r.stop();
  if (dataDir) await removeDir(dataDir);
});

test('a second relay on the same data dir refuses to start; after kill -9 of the first, a new one starts at once', async () => {
  dataDir = await tempDir('postern-lock-e2e-');
  const env = { POSTERN_ADMIN_TOKEN: 'lock-test-admin-token-0001' };
  const first = await startRelay({ dataDir, env });
  relays.push(first);
  const channel = await first.api<{ id: string }>('POST', '/api/channels', { name: 'kept' });
  const res = await fetch(`${first.url}/h/${channel.id}`, { method: 'POST', body: 'hello' });
  assert.equal(res.status, 202);
  const { id: eventId } = (await res.json()) as { id: string };
  const lockBefore = await readFile(path.join(dataDir, 'relay.lock'), 'utf8');
  const pid = first.proc.child.pid!;
  assert.equal((JSON.parse(lockBefore) as { pid: number }).pid, pid);

  const second = await spawnRelay(dataDir, { env });
  assert.equal(await second.exited, 1);
  const refusal = second.raw.filter((l) => l.startsWith('postern-relay: '));
  assert.equal(refusal.length, 1, second.raw.join('\n'));
  assert.match(
    refusal[0]!,
    new RegExp(
      `^postern-relay: ${dataDir} is in use by another relay \\(pid ${pid} on host ${os.hostname()}, started [0-9T:.Z-]+\\); one relay per data dir: stop it first$`,
    ),
  );
  assert.equal(second.lines.filter((l) => l.msg === 'relay listening').length, 0);
  assert.equal(await readFile(path.join(dataDir, 'relay.lock'), 'utf8'), lockBefore);
  const still = await first.api<{ channels: unknown[] }>('GET', '/api/channels');
  assert.equal(still.channels.length, 1, 'the first relay still serves, its state untouched');

  await first.proc.kill('SIGKILL');
  const third = await startRelay({ dataDir, env });
  relays.push(third);
  const tookOver = third.proc.lines.filter(
    (l) => l.msg === 'took over the data-dir lock of a relay that is gone',
  );
  assert.equal(tookOver.length, 1);
  assert.deepEqual((tookOver[0]!['holder'] as { pid: number }).pid, pid);
  const { channels } = await third.api<{ channels: { id: string; name: string }[] }>(
    'GET',
    '/api/channels',
  );
  assert.deepEqual(
    channels.map((c) => [c.id, c.name]),
    [[channel.id, 'kept']],
  );
  const event = await waitForEventStatus(third, eventId, 'queued');
  assert.equal(event.channelId, channel.id);
  const lock = JSON.parse(await readFile(path.join(dataDir, 'relay.lock'), 'utf8')) as {
    pid: number;
  };
  assert.equal(lock.pid, third.proc.child.pid);
});

test('a relay whose port is taken says so in one line, and leaves its data dir free', async () => {
  const busyDir = await tempDir('postern-busy-port-');
  const env = { POSTERN_ADMIN_TOKEN: 'lock-test-admin-token-0002' };
  const holder = await startRelay({ env });
  relays.push(holder);
  const port = Number(new URL(holder.url).port);
  const refused = await spawnRelay(busyDir, { env, port });
  assert.equal(await refused.exited, 1);
  const lines = refused.raw.filter((l) => l.startsWith('postern-relay: '));
  assert.deepEqual(lines, [
    `postern-relay: port ${port} on 127.0.0.1 is in use by another process: stop it, or choose another --port`,
  ]);
  assert.ok(!refused.raw.some((l) => /^\s+at /.test(l)), 'no stack trace');
  // The lock went with the failed start: the next relay on the dir starts without a takeover.
  const next = await startRelay({ dataDir: busyDir, env });
  relays.push(next);
  assert.equal(
    next.proc.lines.filter((l) => l.msg === 'took over the data-dir lock of a relay that is gone')
      .length,
    0,
  );
  await next.stop();
  await removeDir(busyDir);
});
