/**
 * Sync channels: the provider gets the app's own response through the tunnel; with no agent,
 * or past the deadline, it gets 202 at once and the event stays queued.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { request } from 'undici';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle | undefined;
let stateDir: string;
let channelId: string;

before(async () => {
  app = await startApp();
  relay = await startRelay();
  const channel = await relay.api('POST', '/api/channels', {
    name: 'slash',
    response: { mode: 'sync', timeoutMs: 1500 },
  });
  channelId = channel.id;
  ({ stateDir } = await pairAgent(relay, [channelId]));
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(stateDir);
});

test('with no agent connected, a sync channel answers 202 at once and queues the event', async () => {
  const started = Date.now();
  const res = await request(`${relay.url}/h/${channelId}/cmd`, { method: 'POST', body: 'text=hi' });
  const body = (await res.body.json()) as { id: string };
  assert.equal(res.statusCode, 202);
  assert.ok(Date.now() - started < 1500, 'did not wait for the deadline');
  assert.equal((await relay.api('GET', `/api/events/${body.id}`)).status, 'queued');
  agent = await startAgent(stateDir, [{ channel: 'slash', target: app.url, sync: true }]);
  await waitForEventStatus(relay, body.id, 'delivered');
});

test("the provider receives the app's status, headers and body", async () => {
  app.respond = (req, res) => {
    res.statusCode = 201;
    res.setHeader('content-type', 'text/xml');
    res.setHeader('x-app', 'twiml');
    res.end(`<Response><Say>${req.body.toString()}</Say></Response>`);
  };
  const res = await request(`${relay.url}/h/${channelId}/voice?From=%2B1`, {
    method: 'POST',
    body: 'hello',
  });
  assert.equal(res.statusCode, 201);
  assert.equal(res.headers['content-type'], 'text/xml');
  assert.equal(res.headers['x-app'], 'twiml');
  const id = String(res.headers['x-postern-event-id']);
  assert.match(id, /^evt_/);
  assert.equal(await res.body.text(), '<Response><Say>hello</Say></Response>');
  await waitForEventStatus(relay, id, 'delivered');
});

test('past the deadline the provider gets 202 and the event is still delivered', async () => {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  app.respond = async (_req, res) => {
    await released;
    res.end('late');
  };
  const started = Date.now();
  const res = await request(`${relay.url}/h/${channelId}/slow`, { method: 'POST', body: 'x' });
  const elapsed = Date.now() - started;
  const body = (await res.body.json()) as { id: string };
  assert.equal(res.statusCode, 202);
  assert.ok(elapsed >= 1400, `waited for the 1500 ms deadline (waited ${elapsed} ms)`);
  release();
  await waitForEventStatus(relay, body.id, 'delivered');
});
