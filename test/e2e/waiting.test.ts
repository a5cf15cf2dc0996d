/**
 * A queued event says why it waits (the `waiting` object of the admin API, list, show and
 * stream), and goes as soon as the cause goes away: an agent granted the channel, an agent
 * connecting, an agent coming back with the route it lacked — the last before the retry time
 * the missing route parked it at.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

interface Waiting {
  reason: string;
  message: string;
  retryAt?: number;
  lastError?: string;
  agentId?: string;
  agentName?: string;
  blockedBy?: string;
}

interface EventView {
  id: string;
  status: string;
  attempts: { outcome: string; at: string }[];
  waiting?: Waiting;
}

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
let dataDir: string | undefined;
const agents: AgentHandle[] = [];
const stateDirs: string[] = [];

before(async () => {
  app = await startApp();
  dataDir = await tempDir();
  relay = await startRelay({ dataDir });
});

after(async () => {
  for (const a of agents) await a.stop();
  await relay?.stop();
  await app?.close();
  if (dataDir) await removeDir(dataDir);
  for (const dir of stateDirs) await removeDir(dir);
});

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

async function channel(name: string): Promise<string> {
  return (await need(relay, 'relay').api<{ id: string }>('POST', '/api/channels', { name })).id;
}

async function send(channelId: string): Promise<string> {
  const r = need(relay, 'relay');
  const res = await fetch(`${r.url}/h/${channelId}`, { method: 'POST', body: '{"n":1}' });
  assert.equal(res.status, 202);
  return ((await res.json()) as { id: string }).id;
}

async function show(id: string): Promise<EventView> {
  return need(relay, 'relay').api<EventView>('GET', `/api/events/${id}`);
}

/** Waits until the event, as shown, waits for `reason`; returns it. */
function waitsFor(id: string, reason: string): Promise<EventView> {
  return eventually(
    async () => {
      const e = await show(id);
      return e.waiting?.reason === reason ? e : undefined;
    },
    20_000,
    `event ${id} to wait for ${reason}`,
  );
}

async function pair(channels: string[], name: string) {
  const paired = await pairAgent(need(relay, 'relay'), channels, name);
  stateDirs.push(paired.stateDir);
  return paired;
}

async function run(stateDir: string, channelName: string): Promise<AgentHandle> {
  const target = `${need(app, 'app').url}/hooks`;
  const agent = await startAgent(stateDir, [{ channel: channelName, target }]);
  agents.push(agent);
  return agent;
}

test('no agent granted: says so; granting one delivers it', async () => {
  const r = need(relay, 'relay');
  const chId = await channel('grant-me');
  const otherId = await channel('grant-other');
  const { stateDir, agentId } = await pair([otherId], 'granted-later');
  // Its routes name both: the one it is not granted yet only draws a warning.
  const agent = await startAgent(stateDir, [
    { channel: 'grant-other', target: `${need(app, 'app').url}/other` },
    { channel: 'grant-me', target: `${need(app, 'app').url}/hooks` },
  ]);
  agents.push(agent);
  const id = await send(chId);
  const shown = await waitsFor(id, 'no_agent');
  assert.equal(shown.status, 'queued');
  assert.match(shown.waiting!.message, /no agent is granted channel "grant-me"/);
  // The list says the same.
  const listed = await r.api<{ events: EventView[] }>('GET', `/api/events?channel=grant-me`);
  assert.deepEqual(
    listed.events.map((e) => [e.id, e.waiting?.reason]),
    [[id, 'no_agent']],
  );

  await r.api('PATCH', `/api/agents/${agentId}`, { channels: [otherId, chId] });
  const done = await waitForEventStatus(r, id, 'delivered');
  assert.equal(done.waiting, undefined);
  assert.deepEqual(
    done.attempts.map((a: { outcome: string }) => a.outcome),
    ['delivered'],
  );
});

test('no granted agent connected: names it; its connecting delivers the event', async () => {
  const r = need(relay, 'relay');
  const chId = await channel('offline-one');
  const { stateDir, agentId } = await pair([chId], 'laptop');
  const id = await send(chId);
  const shown = await waitsFor(id, 'agent_offline');
  assert.equal(shown.waiting!.agentId, agentId);
  assert.equal(shown.waiting!.agentName, 'laptop');
  assert.match(shown.waiting!.message, /agent "laptop" .* is not connected/);

  // The live stream carries it too: an event sent now shows up there waiting.
  const ac = new AbortController();
  const stream = await fetch(`${r.url}/api/stream?channel=offline-one`, {
    headers: { authorization: `Bearer ${r.token}` },
    signal: ac.signal,
  });
  try {
    const second = await send(chId);
    const reader = stream.body!.getReader();
    let text = '';
    for (let i = 0; i < 200 && !text.includes(`"id":"${second}"`); i++) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    const line = text.split('\n').find((l) => l.includes(`"id":"${second}"`));
    assert.ok(line, 'the stream reports the event');
    const view = JSON.parse(line.slice('data: '.length)) as EventView;
    assert.equal(view.waiting?.reason, 'agent_offline');
  } finally {
    ac.abort();
  }

  await run(stateDir, 'offline-one');
  const done = await waitForEventStatus(r, id, 'delivered');
  assert.equal(done.waiting, undefined);
});

test('no route on the agent: says so; back with the route, it goes before its parked retry', async () => {
  const r = need(relay, 'relay');
  const chId = await channel('routeless');
  await channel('routeless-other');
  const { stateDir } = await pair([chId], 'no-route-yet');
  // Connected, but its only route is for a channel it is not granted.
  const without = await run(stateDir, 'routeless-other');
  const id = await send(chId);
  const parked = await waitsFor(id, 'no_route');
  assert.equal(parked.status, 'queued');
  const retryAt = parked.waiting!.retryAt!;
  assert.ok(retryAt > Date.parse(parked.attempts[0]!.at), 'parked until a later retry');
  assert.equal(parked.waiting!.agentName, 'no-route-yet');
  assert.match(parked.waiting!.message, /has no route for channel "routeless"/);

  await without.stop();
  await run(stateDir, 'routeless');
  const done = await waitForEventStatus(r, id, 'delivered', 60_000);
  const delivered = done.attempts.filter((a: { outcome: string }) => a.outcome === 'delivered');
  assert.equal(delivered.length, 1);
  // Made due by the new session, not by the parked retry time coming.
  assert.ok(
    Date.parse(delivered[0].at) < retryAt,
    `delivered at ${delivered[0].at}, parked until ${new Date(retryAt).toISOString()}`,
  );
});

test('an app that fails: the event waits for its retry, the next of its key behind it', async (t) => {
  const failing = await startApp((_req, res) => {
    res.statusCode = 503;
    res.end('down for maintenance');
  });
  t.after(() => failing.close());
  const r = need(relay, 'relay');
  const chId = (
    await r.api<{ id: string }>('POST', '/api/channels', { name: 'failing', ordered: true })
  ).id;
  const { stateDir } = await pair([chId], 'failing-agent');
  agents.push(await startAgent(stateDir, [{ channel: 'failing', target: `${failing.url}/x` }]));
  const head = await send(chId);
  const waiting = await waitsFor(head, 'retry');
  assert.equal(waiting.status, 'queued');
  assert.ok(waiting.waiting!.lastError, 'the last error is given');
  assert.ok(waiting.waiting!.retryAt! > Date.parse(waiting.attempts.at(-1)!.at));
  assert.match(
    waiting.waiting!.message,
    /^waiting to retry (at \S+|now) after attempt \d+ failed: /,
  );

  const next = await send(chId);
  const held = await waitsFor(next, 'ordered');
  assert.equal(held.waiting!.blockedBy, head);
  assert.equal(held.attempts.length, 0);
});
