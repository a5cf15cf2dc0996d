/**
 * Graceful shutdown: on SIGTERM the relay stops taking webhooks, sends `goaway` to agents,
 * finishes the commits in flight and exits 0. Every webhook it acknowledged is delivered after
 * a restart on the same data dir; the agent reconnects by itself.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { request } from 'undici';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle;
let channelId: string;

before(async () => {
  app = await startApp();
  relay = await startRelay();
  channelId = (await relay.api('POST', '/api/channels', { name: 'graceful' })).id;
  const { stateDir } = await pairAgent(relay, [channelId]);
  agent = await startAgent(stateDir, [{ channel: 'graceful', target: app.url }]);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(agent.stateDir);
});

test('SIGTERM mid-traffic: acknowledged webhooks survive, the agent is told to go away', async () => {
  // Hold deliveries so that events are queued and in flight when the relay stops.
  let open = false;
  app.respond = async (_req, res) => {
    await eventually(() => (open ? true : undefined), 60_000, 'app release');
    res.end('ok');
  };
  const acknowledged = new Set<string>();
  let refused = 0;
  const send = async (i: number) => {
    try {
      const res = await request(`${relay.url}/h/${channelId}`, { method: 'POST', body: `n=${i}` });
      const text = await res.body.text();
      if (res.statusCode === 202) acknowledged.add((JSON.parse(text) as { id: string }).id);
      else refused++;
    } catch {
      refused++;
    }
  };
  const first = Array.from({ length: 50 }, (_, i) => send(i));
  await Promise.all(first);
  const port = Number(new URL(relay.url).port);
  const stopping = relay.proc.kill('SIGTERM');
  const late = Array.from({ length: 50 }, (_, i) => send(50 + i));
  const code = await stopping;
  await Promise.all(late);
  assert.equal(code, 0, 'the relay exits 0 after SIGTERM');
  assert.ok(relay.proc.lines.some((l) => l.msg === 'relay stopped'));
  await agent.proc.waitForMsg('the relay asked us to reconnect later');
  assert.equal(acknowledged.size + refused, 100);
  assert.ok(acknowledged.size >= 50, `the first 50 were acknowledged (${acknowledged.size})`);

  open = true;
  relay = await startRelay({ dataDir: relay.dataDir, port });
  await eventually(
    () => {
      const ids = new Set(app.received.map((r) => String(r.headers['x-postern-event-id'])));
      return [...acknowledged].every((id) => ids.has(id)) ? true : undefined;
    },
    60_000,
    'every acknowledged webhook delivered',
  );
  const delivered = new Set(app.received.map((r) => String(r.headers['x-postern-event-id'])));
  const lost = [...acknowledged].filter((id) => !delivered.has(id));
  console.log(
    `shutdown: 100 sent, ${acknowledged.size} acknowledged, ${refused} refused, ${lost.length} lost`,
  );
  assert.deepEqual(lost, []);
});
