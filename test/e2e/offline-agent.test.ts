/**
 * An agent that is away loses nothing: webhooks that arrive while it is stopped are answered
 * 202, kept `queued` (no attempt used), and delivered exactly once each when it comes back;
 * an agent stopped with SIGTERM mid-way and restarted still delivers every event, duplicates
 * only ever under the same event id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { Agent, request } from 'undici';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  type Route,
  listEvents,
} from '../helpers/processes.ts';
import { test } from '../helpers/store.ts';

interface EventView {
  id: string;
  channelId: string;
  status: string;
  attemptCount: number;
  attempts: { outcome: string }[];
}

const CHANNEL = 'offline';
const N = 200;

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
let agent: AgentHandle | undefined;
let stateDir: string | undefined;
/** Made here, not by startRelay, so that it is removed even if the relay fails to start. */
let dataDir: string | undefined;
let routes: Route[] = [];
let channelId = '';
/** Every webhook this suite sent (event id → body), across tests. */
const allSent = new Map<string, Buffer>();
const http = new Agent({ connections: 32, headersTimeout: 15_000, bodyTimeout: 15_000 });

before(async () => {
  app = await startApp();
  dataDir = await tempDir();
  relay = await startRelay({ dataDir });
  const channel = await relay.api<{ id: string }>('POST', '/api/channels', { name: CHANNEL });
  channelId = channel.id;
  ({ stateDir } = await pairAgent(relay, [channelId]));
  routes = [{ channel: CHANNEL, target: `${app.url}/hooks` }];
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

function listChannel(r: RelayHandle): Promise<EventView[]> {
  return listEvents<EventView>(r, channelId);
}

/** One webhook; returns the event id from the 202 answer. */
async function sendOne(r: RelayHandle, body: Buffer): Promise<string> {
  const res = await request(`${r.url}/h/${channelId}/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    dispatcher: http,
  });
  const text = await res.body.text();
  assert.equal(res.statusCode, 202, `ingress answered ${res.statusCode} ${text}`);
  const parsed: unknown = JSON.parse(text);
  const id =
    typeof parsed === 'object' && parsed !== null && 'id' in parsed ? parsed.id : undefined;
  assert.equal(typeof id, 'string', `202 body carries an id: ${text}`);
  assert.match(String(id), /^evt_[0-9a-z]{26}$/);
  return String(id);
}

/**
 * Sends `count` webhooks, at most `inFlight` at a time; each body is unique. Returns
 * event id → body, and fails on a repeated id.
 */
async function sendMany(
  r: RelayHandle,
  label: string,
  from: number,
  count: number,
  inFlight: number,
  onEach?: () => void,
): Promise<Map<string, Buffer>> {
  const sent = new Map<string, Buffer>();
  let next = from;
  const end = from + count;
  const worker = async () => {
    while (next < end) {
      const seq = next++;
      const body = Buffer.from(
        JSON.stringify({ test: label, seq, nonce: randomBytes(8).toString('hex') }),
      );
      const id = await sendOne(r, body);
      assert.ok(!sent.has(id), `event id ${id} returned twice`);
      sent.set(id, body);
      onEach?.();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return sent;
}

function eventIdOf(req: Received): string {
  const id = req.headers['x-postern-event-id'];
  assert.equal(typeof id, 'string', 'every request carries x-postern-event-id');
  return String(id);
}

/** Groups what the app received by event id, keeping only the ids in `sent`. */
function receivedFor(sent: Map<string, Buffer>, all: readonly Received[]): Map<string, Received[]> {
  const byId = new Map<string, Received[]>();
  for (const req of all) {
    const id = eventIdOf(req);
    if (!sent.has(id)) continue;
    const list = byId.get(id) ?? [];
    list.push(req);
    byId.set(id, list);
  }
  return byId;
}

test(`${N} webhooks sent while the agent is offline stay queued, then arrive exactly once each`, async () => {
  const r = need(relay, 'relay');
  const a = need(app, 'app');
  const dir = need(stateDir, 'state dir');
  assert.equal(agent, undefined, 'no agent runs yet');

  const sent = await sendMany(r, 'offline', 0, N, 20);
  assert.equal(sent.size, N, `${N} sent, ${sent.size} distinct event ids`);

  const queued = await listChannel(r);
  assert.equal(queued.length, N, `relay lists ${queued.length} of ${N} events`);
  assert.deepEqual(new Set(queued.map((e) => e.id)), new Set(sent.keys()));
  const notQueued = queued.filter((e) => e.status !== 'queued' || e.attemptCount !== 0);
  assert.deepEqual(
    notQueued.map((e) => `${e.id} ${e.status} attempts=${e.attemptCount}`),
    [],
    'every event is queued with no attempt used',
  );
  assert.equal(a.received.length, 0, 'the app got nothing while the agent was offline');

  agent = await startAgent(dir, routes);
  await a.waitFor(N, 30_000);
  const delivered = await eventually(
    async () => {
      const events = await listChannel(r);
      return events.every((e) => e.status === 'delivered') ? events : undefined;
    },
    30_000,
    `all ${N} events to be delivered`,
  );

  const byId = receivedFor(sent, a.received);
  const missing = [...sent.keys()].filter((id) => !byId.has(id));
  const twice = [...byId].filter(([, list]) => list.length > 1).map(([id]) => id);
  assert.equal(a.received.length, N, `${N} sent, ${a.received.length} requests at the app`);
  assert.deepEqual(missing, [], `${missing.length} missing`);
  assert.deepEqual(twice, [], `${twice.length} delivered more than once`);
  for (const [id, [req]] of byId) {
    assert.ok(req);
    assert.deepEqual(req.body, sent.get(id), `body of ${id} arrived unchanged`);
    assert.equal(req.headers['x-postern-attempt'], '1', `${id} arrived on its first attempt`);
  }

  assert.equal(delivered.length, N);
  const notOnce = delivered.filter(
    (e) =>
      e.attemptCount !== 1 || e.attempts.length !== 1 || e.attempts[0]?.outcome !== 'delivered',
  );
  assert.deepEqual(
    notOnce.map((e) => `${e.id} attempts=${e.attemptCount}`),
    [],
    'waiting for the agent consumed no attempt: each event delivered with attemptCount 1',
  );
  // Nothing more trickles in once everything is delivered.
  assert.equal(a.received.length, N);
  for (const [id, body] of sent) allSent.set(id, body);
});

test('an agent stopped with SIGTERM mid-way and restarted still delivers every event', async () => {
  const r = need(relay, 'relay');
  const a = need(app, 'app');
  const dir = need(stateDir, 'state dir');
  const running = need(agent, 'agent from the first test');
  const HALF = 100;
  const countFor = (ids: Map<string, Buffer>) =>
    a.received.filter((req) => ids.has(eventIdOf(req))).length;

  // A slow app, so that deliveries are still in progress when the agent is told to stop.
  a.respond = (_req, res) => void setTimeout(() => res.end('ok'), 150);
  const receivedBefore = a.received.length;
  let stopping: Promise<number | null> | undefined;
  const first = await sendMany(r, 'sigterm', 0, HALF, 10, () => {
    // Stop once the app has seen a part of the first half, while the rest is still arriving.
    if (!stopping && a.received.length - receivedBefore >= 40) stopping = running.proc.kill();
  });
  if (!stopping) {
    await a.waitFor(receivedBefore + 40, 20_000);
    stopping = running.proc.kill();
  }
  const code = await stopping;
  assert.equal(code, 0, 'the agent exits cleanly on SIGTERM');
  agent = undefined;

  // The second half arrives while no agent runs.
  const second = await sendMany(r, 'sigterm', HALF, HALF, 10);
  const sent = new Map([...first, ...second]);
  assert.equal(sent.size, 2 * HALF, `${2 * HALF} sent, ${sent.size} distinct ids`);
  const atStop = countFor(sent);
  const pending = (await listChannel(r)).filter(
    (e) => sent.has(e.id) && e.status !== 'delivered',
  ).length;
  assert.ok(
    pending >= HALF && atStop < sent.size,
    `agent stopped mid-way: ${atStop} requests at the app, ${pending} events not delivered`,
  );

  a.respond = (_req, res) => void res.end('ok');
  agent = await startAgent(dir, routes);
  await eventually(
    async () => {
      const events = (await listChannel(r)).filter((e) => sent.has(e.id));
      return events.length === sent.size && events.every((e) => e.status === 'delivered')
        ? true
        : undefined;
    },
    30_000,
    `all ${sent.size} events to be delivered after the restart`,
  );

  const byId = receivedFor(sent, a.received);
  const missing = [...sent.keys()].filter((id) => !byId.has(id));
  let duplicates = 0;
  for (const [id, list] of byId) {
    duplicates += list.length - 1;
    for (const req of list) {
      assert.equal(eventIdOf(req), id);
      assert.deepEqual(req.body, sent.get(id), `body of ${id} arrived unchanged`);
    }
  }
  // Each body is unique, so a body seen under two ids would be a duplicate with a new id.
  const idsByBody = new Map<string, Set<string>>();
  for (const [id, list] of byId) {
    for (const req of list) {
      const key = req.body.toString('hex');
      const set = idsByBody.get(key) ?? new Set<string>();
      set.add(id);
      idsByBody.set(key, set);
    }
  }
  const reIdentified = [...idsByBody.values()].filter((s) => s.size > 1).length;
  console.log(
    `sigterm: ${sent.size} sent, ${atStop} at the app when the agent stopped, ` +
      `${byId.size} delivered, ${missing.length} missing, ${duplicates} duplicates (same id)`,
  );
  assert.deepEqual(
    missing,
    [],
    `${sent.size} sent, ${byId.size} delivered, ${missing.length} missing`,
  );
  assert.equal(byId.size, sent.size);
  assert.equal(reIdentified, 0, 'no body arrived under two different event ids');
  for (const [id, body] of sent) allSent.set(id, body);
  // The app got no request under an id that this suite was never given.
  const unknown = a.received.map(eventIdOf).filter((id) => !allSent.has(id));
  assert.deepEqual(unknown, [], 'every request at the app belongs to a sent webhook');
});
