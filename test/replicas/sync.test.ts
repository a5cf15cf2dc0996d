/**
 * Sync channels across relays (issue #13, item 3): the provider's request is held by relay A,
 * the agent sits on relay B; the app's answer comes back through the store within the
 * channel's deadline, or the provider gets the usual 202 and the event is delivered anyway.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { post, startReplicas, type Replicas } from './support.ts';

let replicas: Replicas;
let a: RelayHandle;
let b: RelayHandle;
let app: TestApp;
let agent: AgentHandle | undefined;
let stateDir = '';
let channelId = '';
let plainId = '';
let agentId = '';

const connectedOnA = (want: boolean) =>
  eventually(
    async () => {
      const list = (await a.api('GET', '/api/agents')).agents;
      return list.find((x: any) => x.id === agentId)?.connected === want ? true : undefined;
    },
    10_000,
    `relay A to show the agent ${want ? 'connected' : 'gone'}`,
  );

before(async () => {
  app = await startApp();
  replicas = await startReplicas(2);
  [a, b] = replicas.relays as [RelayHandle, RelayHandle];
  const channel = await a.api('POST', '/api/channels', {
    name: 'slash',
    response: { mode: 'sync', timeoutMs: 5_000 },
  });
  channelId = channel.id;
  // A sync channel whose route does not pass the answer on (no `sync: true`).
  plainId = (
    await a.api('POST', '/api/channels', {
      name: 'plain',
      response: { mode: 'sync', timeoutMs: 30_000 },
    })
  ).id;
  ({ stateDir, agentId } = await pairAgent(a, [channelId, plainId], 'agent-on-b', b.url));
  agent = await startAgent(stateDir, [
    { channel: 'slash', target: app.url, sync: true },
    { channel: 'plain', target: app.url },
  ]);
  await connectedOnA(true);
});

after(async () => {
  await agent?.stop();
  await replicas?.close();
  await app?.close();
  if (stateDir) await removeDir(stateDir);
});

test("relay A answers with the app's status, headers and body when the agent is on relay B", async () => {
  app.respond = (req, res) => {
    res.statusCode = 201;
    res.setHeader('content-type', 'text/xml');
    res.setHeader('x-app', 'twiml');
    res.end(`<Response>${req.body.toString()}</Response>`);
  };
  for (let i = 0; i < 5; i++) {
    const res = await post(a, channelId, `hello ${i}`, '/voice');
    assert.equal(res.status, 201, res.text);
    assert.equal(res.headers.get('content-type'), 'text/xml');
    assert.equal(res.headers.get('x-app'), 'twiml');
    assert.equal(res.text, `<Response>hello ${i}</Response>`);
    const id = res.headers.get('x-postern-event-id') ?? '';
    assert.match(id, /^evt_/);
    await waitForEventStatus(a, id, 'delivered');
  }
  assert.equal(app.received.length, 5);
});

test('an answer larger than a notification comes back whole', async () => {
  const big = Buffer.alloc(200_000, 'x');
  big.write('start');
  app.respond = (_req, res) => {
    res.setHeader('content-type', 'application/octet-stream');
    res.end(big);
  };
  const res = await fetch(`${a.url}/h/${channelId}/big`, { method: 'POST', body: 'big' });
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), big);
});

test('an attempt with no answer to pass on: relay A answers 202 when it is known, not at the deadline', async () => {
  app.respond = (_req, res) => {
    res.statusCode = 201;
    res.end('not for the provider');
  };
  const before = app.received.length;
  const started = performance.now();
  const res = await post(a, plainId, 'plain');
  assert.equal(res.status, 202, res.text);
  assert.ok(performance.now() - started < 30_000, 'answered before the 30 s deadline');
  const { id } = JSON.parse(res.text) as { id: string };
  await waitForEventStatus(a, id, 'delivered');
  assert.equal(app.received.length, before + 1);
});

test('past the deadline relay A answers 202 and the event is still delivered through B', async () => {
  await a.api('PATCH', `/api/channels/${channelId}`, {
    response: { mode: 'sync', timeoutMs: 1_000 },
  });
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const before = app.received.length;
  app.respond = async (_req, res) => {
    await released;
    res.end('late');
  };
  const res = await post(a, channelId, 'slow', '/slow');
  assert.equal(res.status, 202, res.text);
  const { id } = JSON.parse(res.text) as { id: string };
  release();
  await waitForEventStatus(a, id, 'delivered');
  assert.equal(app.received.length, before + 1);
});

test('with the agent on no relay, relay A answers 202 and keeps the event queued', async () => {
  await agent!.stop();
  agent = undefined;
  await connectedOnA(false);
  const res = await post(a, channelId, 'nobody', '/none');
  assert.equal(res.status, 202, res.text);
  const { id } = JSON.parse(res.text) as { id: string };
  assert.equal((await a.api('GET', `/api/events/${id}`)).status, 'queued');
});
