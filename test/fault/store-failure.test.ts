/**
 * A store that cannot write: the relay runs under `ulimit -f 256` (a 256 KiB file-size limit),
 * so store writes fail with EFBIG once events.mdb reaches it (Node ignores SIGXFSZ, so the
 * process lives on). Ingress then answers 503 with Retry-After, never a 2xx it cannot keep;
 * every webhook answered 202 reaches the app, none answered 503 does, and every 202 was really
 * on disk: a relay restarted on the same data dir without the limit still has each of them.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  describeAccounting,
  linesWith,
  listChannel,
  startRelayInShell,
  waitAllDelivered,
} from './helpers.ts';
import { test } from '../helpers/store.ts';

const LIMIT_KIB = 256;
const BODY_BYTES = 16 * 1024;
const MAX_SENT = 120;
const STOP_AFTER_503 = 8;

const relays: RelayHandle[] = [];
let agent: AgentHandle | undefined;
let app: TestApp | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
const http = burstDispatcher(4);

after(async () => {
  await agent?.stop();
  for (const r of relays) await r.stop();
  await app?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

/** The soft file-size limit of a process, in bytes (from /proc/<pid>/limits). */
async function fileSizeLimit(pid: number): Promise<string> {
  const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
  const line = limits.split('\n').find((l) => l.startsWith('Max file size'));
  assert.ok(line, 'limits list a max file size');
  return line.split(/\s{2,}/)[1] ?? '';
}

test(
  'store writes failing with EFBIG: 202 or 503 only, and every 202 is kept and delivered',
  { embeddedOnly: 'LMDB and journal files over a file size limit' },
  async () => {
    dataDir = await tempDir();
    const relay = await startRelayInShell({ dataDir, shellPrefix: `ulimit -f ${LIMIT_KIB}` });
    relays.push(relay);
    const pid = relay.proc.child.pid;
    assert.ok(pid !== undefined);
    assert.equal(
      await fileSizeLimit(pid),
      String(LIMIT_KIB * 1024),
      'the relay itself (exec, not a child of bash) runs under the limit',
    );

    app = await startApp();
    const a = app;
    const channel = await relay.api<{ id: string }>('POST', '/api/channels', { name: 'full-disk' });
    ({ stateDir } = await pairAgent(relay, [channel.id]));
    agent = await startAgent(stateDir, [{ channel: 'full-disk', target: `${a.url}/hooks` }]);

    let refused = 0;
    const sent = await burst({
      url: `${relay.url}/h/${channel.id}/big`,
      count: MAX_SENT,
      inFlight: 4,
      dispatcher: http,
      deadlineMs: 60_000,
      label: 'store-failure',
      bodyBytes: BODY_BYTES,
      onAnswer: (s) => (s.status === 503 ? ++refused >= STOP_AFTER_503 : false),
    });
    const acked = acknowledged(sent);
    const statuses = new Map<string, number>();
    for (const s of sent) {
      const key = s.status === null ? `error: ${s.error}` : String(s.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
    }
    const rejected = sent.filter((s) => s.status === 503);
    const withRetryAfter = rejected.filter(
      (s) => s.retryAfter !== null && /^\d+$/.test(s.retryAfter),
    );
    const firstRefused = rejected.length > 0 ? Math.min(...rejected.map((s) => s.seq)) : -1;
    console.log(
      `store failure: ${sent.length} sent with ${BODY_BYTES}-byte bodies under a ${LIMIT_KIB} KiB ` +
        `file-size limit; answers ${JSON.stringify(Object.fromEntries(statuses))}; first 503 at ` +
        `seq ${firstRefused}; ${withRetryAfter.length} of ${rejected.length} 503s with Retry-After`,
    );
    assert.deepEqual(
      sent
        .filter((s) => s.status !== 202 && s.status !== 503)
        .map((s) => `seq ${s.seq}: ${s.status ?? s.error}`),
      [],
      'every answer is 202 or 503',
    );
    assert.equal(
      acked.size,
      sent.length - rejected.length,
      'every 202 carries a distinct event id',
    );
    assert.ok(acked.size > 0, 'webhooks were acknowledged before the limit was reached');
    assert.ok(
      rejected.length > 0,
      `the relay answered 503 once writes failed (${sent.length} sent)`,
    );
    assert.ok(withRetryAfter.length > 0, 'a 503 carries a Retry-After header');
    assert.equal(withRetryAfter.length, rejected.length, 'every 503 carries Retry-After');

    // The relay survived the failed writes (SIGXFSZ ignored) and says so.
    assert.equal(relay.proc.child.exitCode, null, 'the relay is still running');
    assert.equal(relay.proc.child.signalCode, null, 'the relay was not killed by a signal');
    const health = await fetch(`${relay.url}/healthz`);
    assert.equal(health.status, 200, '/healthz answers 200');
    const storeErrors = linesWith(relay.proc, 'could not store webhook; answered 503');
    assert.ok(storeErrors.length > 0, "the relay logged 'could not store webhook'");
    const err = storeErrors[0]?.['err'];
    const errMessage =
      typeof err === 'object' && err !== null && 'message' in err ? String(err.message) : '';
    console.log(`store failure: the relay logged ${storeErrors.length} × "${errMessage}"`);
    assert.match(
      errMessage,
      /^could not commit to events\.mdb: .*\((EFBIG|EIO)\)/,
      'the failed commit, with its errno (SIGXFSZ ignored, not fatal)',
    );

    // Every 202 reaches the app; no 503 does.
    const rejectedBodies = new Set(rejected.map((s) => s.body.toString('base64')));
    await eventually(
      () => (account(acked, a.received).lost.length === 0 ? true : undefined),
      30_000,
      `all ${acked.size} acknowledged webhooks at the app`,
    );
    let acc = account(acked, a.received);
    console.log(describeAccounting('store failure, limited relay', sent.length, acc));
    assert.deepEqual(acc.lost, []);
    assert.equal(acc.delivered, acked.size);
    assert.deepEqual(acc.foreign, [], 'every request at the app carries an acknowledged id');
    assert.deepEqual(acc.wrongBody, []);
    assert.equal(
      a.received.filter((r) => rejectedBodies.has(r.body.toString('base64'))).length,
      0,
      'no webhook answered 503 reached the app',
    );

    // Durability: a 202 means "on disk". Restart on the same data dir and port without the limit.
    const port = Number(new URL(relay.url).port);
    const linesBefore = agent.proc.lines.length;
    await relay.stop();
    const restarted = await startRelay({ dataDir, port });
    relays.push(restarted);
    assert.equal(restarted.url, relay.url);
    const stored = new Set((await listChannel(restarted, channel.id)).map((e) => e.id));
    const notStored = [...acked.keys()].filter((id) => !stored.has(id));
    const storedRejected = stored.size - (acked.size - notStored.length);
    console.log(
      `store failure, after a restart without the limit: ${stored.size} events in the store, ` +
        `${acked.size - notStored.length} of ${acked.size} acknowledged ones; ` +
        `${notStored.length} acknowledged but missing (${notStored.join(', ') || 'none'})`,
    );
    assert.deepEqual(notStored, [], `${notStored.length} webhooks answered 202 were not on disk`);
    assert.equal(storedRejected, 0, 'no webhook answered 503 is in the store');
    await agent.proc.waitForMsg('connected to the relay', 40_000, linesBefore);
    await waitAllDelivered(restarted, channel.id, acked.keys(), 40_000);
    acc = account(acked, a.received);
    console.log(describeAccounting('store failure, after restart', sent.length, acc));
    assert.deepEqual(acc.lost, []);
    assert.deepEqual(acc.foreign, []);
    assert.deepEqual(acc.wrongBody, []);
    assert.equal(acc.reIdentified, 0, 'redeliveries after the restart keep their event id');
  },
);
