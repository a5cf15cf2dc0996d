/**
 * Retention through the relay (finished events disappear after --retention-hours; queued ones
 * stay) and bulk replay of failed events by channel, with the count of what was queued.
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
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle;

before(async () => {
  app = await startApp();
  // 0.0005 h = 1.8 s of retention, swept every second.
  relay = await startRelay({ extraArgs: ['--retention-hours', '0.0005'] });
  await relay.api('POST', '/api/channels', { name: 'kept', retry: { delaysMs: [50] } });
  await relay.api('POST', '/api/channels', { name: 'orphan' });
  const { stateDir } = await pairAgent(relay, ['kept', 'orphan']);
  // No route for "orphan": its events stay queued (no_route), so retention must keep them.
  agent = await startAgent(stateDir, [{ channel: 'kept', target: app.url }]);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(agent.stateDir);
});

async function send(channel: string, body: string): Promise<string> {
  const { id: channelId } = await relay.api('GET', `/api/channels/${channel}`);
  const res = await request(`${relay.url}/h/${channelId}`, { method: 'POST', body });
  assert.equal(res.statusCode, 202);
  return ((await res.body.json()) as { id: string }).id;
}

test('delivered events are removed after the retention age; queued ones are kept', async () => {
  const delivered = [await send('kept', 'a'), await send('kept', 'b')];
  const queued = await send('orphan', 'c');
  for (const id of delivered) await waitForEventStatus(relay, id, 'delivered');
  // Both delivered events go once they are past the age (each at its own sweep).
  const ids = await eventually(
    async () => {
      const { events } = await relay.api('GET', '/api/events?limit=500');
      const listed = (events as { id: string }[]).map((e) => e.id);
      return delivered.some((id) => listed.includes(id)) ? undefined : listed;
    },
    20_000,
    'the delivered events to be removed by retention',
  );
  for (const id of delivered) {
    const res = await fetch(`${relay.url}/api/events/${id}`, {
      headers: { authorization: `Bearer ${relay.token}` },
    });
    await res.body?.cancel();
    assert.equal(res.status, 404);
  }
  assert.equal(ids.includes(queued), true, 'the queued event is kept past the retention age');
  assert.equal((await relay.api('GET', `/api/events/${queued}`)).status, 'queued');
});

test('bulk replay queues every failed event of a channel again, same ids', async (t) => {
  // A relay of its own, with the default retention: nothing may expire during this test.
  const retained = relay;
  relay = await startRelay();
  t.after(async () => {
    await relay.stop();
    await removeDir(relay.dataDir);
    relay = retained;
  });
  await relay.api('POST', '/api/channels', { name: 'kept', retry: { delaysMs: [50] } });
  const paired = await pairAgent(relay, ['kept']);
  const second = await startAgent(paired.stateDir, [{ channel: 'kept', target: app.url }]);
  t.after(async () => {
    await second.stop();
    await removeDir(paired.stateDir);
  });
  app.respond = (_req, res) => {
    res.statusCode = 500;
    res.end('down');
  };
  const ids = [await send('kept', '1'), await send('kept', '2'), await send('kept', '3')];
  for (const id of ids) await waitForEventStatus(relay, id, 'failed');
  const seenWhileDown = app.received.length;
  app.respond = (_req, res) => void res.end('ok');
  const res = await relay.api('POST', '/api/events/replay', { channel: 'kept', status: 'failed' });
  assert.deepEqual(res, { queued: 3 });
  for (const id of ids) {
    const e = await waitForEventStatus(relay, id, 'delivered');
    assert.equal(e.attemptCount, 1, 'a replay starts a fresh schedule');
    assert.equal(e.attempts.length, 3, 'the attempts log keeps the earlier failures');
  }
  const after = app.received.slice(seenWhileDown).map((r) => r.headers['x-postern-event-id']);
  assert.deepEqual([...after].sort(), [...ids].sort());
  assert.deepEqual(
    await relay.api('POST', '/api/events/replay', { channel: 'kept', status: 'failed' }),
    { queued: 0 },
  );
  // Replaying delivered events sends them again: the agent's memory of what it delivered is
  // per replay, so an operator's replay is never swallowed as a duplicate.
  const seenBefore = app.received.length;
  assert.deepEqual(
    await relay.api('POST', '/api/events/replay', { channel: 'kept', status: 'delivered' }),
    {
      queued: 3,
    },
  );
  await app.waitFor(seenBefore + 3);
  const again = app.received.slice(seenBefore).map((r) => r.headers['x-postern-event-id']);
  assert.deepEqual([...again].sort(), [...ids].sort());
  for (const id of ids) await waitForEventStatus(relay, id, 'delivered');
});
