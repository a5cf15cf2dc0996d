/**
 * A channel's settings changed with `PATCH /api/channels/:id` while events are pending (queued,
 * waiting for a retry, in flight) take effect at once, without a restart, and strand nothing:
 * unordered → ordered, ordered → unordered, an ordering key set, a retry schedule changed, and
 * async → sync. Each test ends with exact counts: every event delivered, one request per
 * attempt the relay recorded.
 *
 * The apps hold requests until the test lets them go, so what is in flight at the moment of a
 * change is known, not guessed from timing.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before } from 'node:test';
import { request } from 'undici';
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
} from '../helpers/processes.ts';
import { burstDispatcher } from '../fault/helpers.ts';
import {
  countById,
  eventIdOf,
  getEvent,
  InFlight,
  listChannel,
  need,
  postAccepted,
  SETUP_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  waitDelivered,
  waitEvents,
  type EventView,
} from './support.ts';
import { test } from '../helpers/store.ts';

/** The first retry of the retry-change test: long enough that the change lands before it. */
const LONG_RETRY_MS = 8_000;

let relay: RelayHandle | undefined;
let dataDir: string | undefined;
let stateDir: string | undefined;
/** One agent for every channel; the last test stops it and starts it again. */
let agent: AgentHandle | undefined;
let agentId = '';
let routes: Route[] = [];
const apps = new Map<string, TestApp>();
const channelIds = new Map<string, string>();
const http = burstDispatcher(4);

const CHANNELS: [string, Record<string, unknown>][] = [
  ['u2o', { retry: { delaysMs: [3_000, 300, 300, 300, 300, 300] } }],
  ['o2u', { ordered: true, retry: { delaysMs: [300] } }],
  ['keyed', { ordered: true, retry: { delaysMs: [300] } }],
  ['retry', { ordered: true, retry: { delaysMs: [LONG_RETRY_MS] } }],
  ['sync', { retry: { delaysMs: [300] } }],
];

before(
  async () => {
    dataDir = await tempDir();
    const r = await startRelay({ dataDir });
    relay = r;
    for (const [name, options] of CHANNELS) {
      apps.set(name, await startApp());
      const c = await r.api<{ id: string }>('POST', '/api/channels', { name, ...options });
      channelIds.set(name, c.id);
    }
    // Held requests must not time out at the agent (that would be a failure and a retry).
    const route = (name: string): Route => ({
      channel: name,
      target: `${need(apps.get(name), name).url}/${name}`,
      timeoutMs: 60_000,
      // The route that answers a sync channel passes the app's answer back.
      ...(name === 'sync' ? { sync: true } : {}),
    });
    const names = CHANNELS.map(([name]) => name);
    ({ stateDir, agentId } = await pairAgent(r, names.map(channel)));
    routes = names.map(route);
    agent = await startAgent(stateDir, routes);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  for (const gate of gates) gate.open();
  await agent?.stop();
  await relay?.stop();
  for (const a of apps.values()) await a.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

function channel(name: string): string {
  return need(channelIds.get(name), `channel ${name}`);
}

function app(name: string): TestApp {
  return need(apps.get(name), `app ${name}`);
}

/** Holds the requests it is given until opened; counts them in flight. */
class Gate {
  readonly #held: { res: ServerResponse; status: number; body: string }[] = [];
  #open = false;
  readonly inFlight = new InFlight();

  /** Answers `status` now if the gate is open, else once it opens. */
  pass(res: ServerResponse, status = 200, body = 'ok'): void {
    this.inFlight.enter();
    if (this.#open) this.#answer({ res, status, body });
    else this.#held.push({ res, status, body });
  }

  get held(): number {
    return this.#held.length;
  }

  open(): void {
    this.#open = true;
    for (const h of this.#held.splice(0)) this.#answer(h);
  }

  #answer(h: { res: ServerResponse; status: number; body: string }): void {
    this.inFlight.leave();
    h.res.statusCode = h.status;
    h.res.end(h.body);
  }
}
const gates: Gate[] = [];

function gate(): Gate {
  const g = new Gate();
  gates.push(g);
  return g;
}

/** Changes a channel through the admin API, as an operator would. */
function patch(name: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  return need(relay, 'relay').api('PATCH', `/api/channels/${channel(name)}`, body);
}

function post(name: string, body: unknown, headers?: Record<string, string>): Promise<string> {
  return postAccepted(need(relay, 'relay'), channel(name), JSON.stringify(body), {
    dispatcher: http,
    ...(headers ? { headers } : {}),
  });
}

function labelOf(req: Received): string {
  const parsed: unknown = JSON.parse(req.body.toString('utf8'));
  assert.ok(typeof parsed === 'object' && parsed !== null && 'label' in parsed);
  return String(parsed.label);
}

/** Every event of the channel delivered, with as many app requests as attempts recorded. */
async function assertAllDelivered(name: string, ids: string[], requests: number): Promise<void> {
  const r = need(relay, 'relay');
  const events = await listChannel(r, channel(name));
  assert.deepEqual(
    events.map((e) => e.id).sort(),
    [...ids].sort(),
    `${name}: exactly the events sent`,
  );
  assert.deepEqual(
    events.filter((e) => e.status !== 'delivered').map((e) => `${e.id} ${e.status}`),
    [],
    `${name}: all delivered, none stranded`,
  );
  const byId = countById(app(name).received);
  for (const e of events) {
    assert.equal(byId.get(e.id), e.attemptCount, `${name}: requests for ${e.id} = attempts`);
  }
  assert.equal(app(name).received.length, requests, `${name}: requests at the app`);
}

function statusCounts(events: EventView[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[e.status] = (out[e.status] ?? 0) + 1;
  return out;
}

test(
  'ordered → unordered with the head in flight and events queued behind it: they go at once, in parallel',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = app('o2u');
    const g = gate();
    a.respond = (_req, res) => g.pass(res);
    const head = await post('o2u', { label: 'head' });
    await a.waitFor(1);
    const behind: string[] = [];
    for (let i = 1; i <= 8; i++) behind.push(await post('o2u', { label: `e${i}` }));
    const before = await listChannel(r, channel('o2u'));
    assert.deepEqual(statusCounts(before), { delivering: 1, queued: 8 }, 'held behind the head');
    assert.equal(a.received.length, 1);

    const changed = await patch('o2u', { ordered: false });
    assert.equal(changed['ordered'], false);
    // The head is still held at the app: the eight behind it arrive while it is in flight.
    await a.waitFor(9, 30_000);
    console.log(
      `ordered → unordered: ${a.received.length} requests in flight at the app at once ` +
        `(head held), max ${g.inFlight.max}`,
    );
    assert.equal(g.held, 9);
    assert.equal(g.inFlight.max, 9, 'head and the eight behind it in flight together');
    assert.equal(eventIdOf(a.received[0]!), head);
    g.open();
    await waitDelivered(r, channel('o2u'), [head, ...behind], 30_000);
    await assertAllDelivered('o2u', [head, ...behind], 9);
  },
);

test(
  'ordering key set on an ordered channel with events pending: new keys run beside the old events, which keep their key and their order',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = app('keyed');
    const g = gate();
    // Events without the key header (all those stored before the change) are held.
    a.respond = (req, res) => {
      if (req.headers['x-repo'] === undefined) g.pass(res);
      else res.end('ok');
    };
    const head = await post('keyed', { label: 'head' });
    await a.waitFor(1);
    const old = [await post('keyed', { label: 'old1' }), await post('keyed', { label: 'old2' })];

    const changed = await patch('keyed', { orderingKey: { header: 'x-repo' } });
    assert.deepEqual(changed['orderingKey'], { header: 'x-repo' });
    const a1 = await post('keyed', { label: 'a1' }, { 'x-repo': 'a' });
    const b1 = await post('keyed', { label: 'b1' }, { 'x-repo': 'b' });
    const a2 = await post('keyed', { label: 'a2' }, { 'x-repo': 'a' });
    await waitDelivered(r, channel('keyed'), [a1, b1, a2], 30_000);
    // The old events still wait behind the head, which is still held.
    assert.equal(g.held, 1);
    for (const id of old) {
      const e = await getEvent(r, id);
      assert.equal(e.status, 'queued', 'an old event waits behind the head of its key');
      // Stored before the key was set: the empty key, which the event view leaves out.
      assert.equal(e.orderKey, undefined, 'no key');
    }
    assert.equal((await getEvent(r, a1)).orderKey, 'a');
    assert.equal((await getEvent(r, b1)).orderKey, 'b');

    g.open();
    await waitDelivered(r, channel('keyed'), [head, ...old], 30_000);
    const labels = a.received.map(labelOf);
    console.log(`ordering key set: the app saw ${labels.join(', ')}`);
    assert.deepEqual(
      labels.filter((l) => !/^[ab]/.test(l)),
      ['head', 'old1', 'old2'],
      'the old key in arrival order',
    );
    assert.deepEqual(
      labels.filter((l) => l.startsWith('a')),
      ['a1', 'a2'],
      'key a in arrival order',
    );
    assert.equal(labels.indexOf('b1') < labels.indexOf('old1'), true, 'b1 before the old key');
    await assertAllDelivered('keyed', [head, ...old, a1, b1, a2], 6);
  },
);

test(
  'retry schedule changed with the head waiting for its retry: that retry keeps its time, the next failure follows the new schedule',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = app('retry');
    let xAttempts = 0;
    // x fails twice: under the old schedule (one delay) its second failure would be final.
    a.respond = (req, res) => {
      const fail = labelOf(req) === 'x' && ++xAttempts <= 2;
      res.statusCode = fail ? 500 : 200;
      res.end(fail ? 'fail' : 'ok');
    };
    const x = await post('retry', { label: 'x' });
    const [waiting] = (
      await waitEvents(
        r,
        channel('retry'),
        [x],
        (e) => e.status === 'queued' && e.attemptCount === 1,
        'failed once',
      )
    ).values();
    const scheduled = need(waiting?.nextAttemptAt ?? undefined, 'nextAttemptAt');
    const behind = [
      await post('retry', { label: 'e1' }),
      await post('retry', { label: 'e2' }),
      await post('retry', { label: 'e3' }),
    ];

    const changed = await patch('retry', { retry: { delaysMs: [200, 200] } });
    assert.deepEqual(changed['retry'], { delaysMs: [200, 200] });
    const kept = await getEvent(r, x);
    assert.equal(kept.attemptCount, 1, 'the change landed before the retry');
    assert.equal(kept.nextAttemptAt, scheduled, 'the scheduled retry keeps its time');

    await waitDelivered(r, channel('retry'), [x, ...behind], 30_000);
    const done = await getEvent(r, x);
    const at = done.attempts.map((t) => Date.parse(t.at));
    console.log(
      `retry change: x attempts at +0, +${at[1]! - at[0]!} ms, +${at[2]! - at[0]!} ms; ` +
        `outcomes ${done.attempts.map((t) => t.status).join(', ')}`,
    );
    assert.deepEqual(
      done.attempts.map((t) => t.status),
      [500, 500, 200],
    );
    // Lower bounds only: the relay never sends before the time it scheduled.
    assert.ok(at[1]! - at[0]! >= LONG_RETRY_MS * 0.8, 'the first retry waited the old delay');
    assert.ok(at[2]! - at[1]! >= 200 * 0.8, 'the second waited the new schedule’s second delay');
    const labels = a.received.map(labelOf);
    assert.deepEqual(labels, ['x', 'x', 'x', 'e1', 'e2', 'e3'], 'ordered: x, then the rest');
    await assertAllDelivered('retry', [x, ...behind], 6);
  },
);

test(
  'async → sync with events in flight: they are delivered, and a new request gets the app’s own answer',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = app('sync');
    const g = gate();
    a.respond = (req, res) => {
      if (labelOf(req) === 'now') {
        res.statusCode = 201;
        res.setHeader('content-type', 'text/plain');
        res.end('answer from the app');
      } else {
        g.pass(res);
      }
    };
    const pending: string[] = [];
    for (let i = 1; i <= 3; i++) pending.push(await post('sync', { label: `p${i}` }));
    await a.waitFor(3);

    const changed = await patch('sync', { response: { mode: 'sync', timeoutMs: 20_000 } });
    assert.deepEqual(changed['response'], { mode: 'sync', timeoutMs: 20_000 });
    const res = await request(`${r.url}/h/${channel('sync')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'now' }),
      dispatcher: http,
    });
    const text = await res.body.text();
    assert.equal(res.statusCode, 201, 'the app’s status, not 202');
    assert.equal(text, 'answer from the app');
    const now = String(res.headers['x-postern-event-id']);
    assert.match(now, /^evt_/);
    assert.equal(g.held, 3, 'the earlier events are still in flight');

    g.open();
    await waitDelivered(r, channel('sync'), [...pending, now], 30_000);
    await assertAllDelivered('sync', [...pending, now], 4);
  },
);

test(
  'unordered → ordered with a failed event waiting for its retry and events queued: all delivered, then one at a time in arrival order',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const r = need(relay, 'relay');
    const a = app('u2o');
    let switched = false;
    let failuresAfterSwitch = 0;
    const inFlightAfter = new InFlight();
    const seenAfter: string[] = [];
    // x fails until after the switch, and once more then: its retry is what is at stake.
    a.respond = (req, res) => {
      const label = labelOf(req);
      if (switched) {
        seenAfter.push(label);
        inFlightAfter.enter();
      }
      let status = 200;
      if (label === 'x' && (!switched || failuresAfterSwitch++ === 0)) status = 500;
      // A short hold, so that a second request in flight would overlap and be seen.
      setTimeout(() => {
        if (switched) inFlightAfter.leave();
        res.statusCode = status;
        res.end(status === 200 ? 'ok' : 'fail');
      }, 20);
    };
    const x = await post('u2o', { label: 'x' });
    const [failed] = (
      await waitEvents(
        r,
        channel('u2o'),
        [x],
        (e) => e.status === 'queued' && e.attemptCount >= 1,
        'failed and waiting for a retry',
      )
    ).values();
    assert.equal(failed?.attempts[0]?.status, 500);

    // With the agent away, the events that follow stay queued on the relay. (Last test: the
    // other channels are done with the agent.)
    await need(agent, 'agent').stop();
    await eventually(async () => {
      const { agents } = await r.api<{ agents: { id: string; connected: boolean }[] }>(
        'GET',
        '/api/agents',
      );
      return agents.find((g) => g.id === agentId)?.connected === false ? true : undefined;
    });
    const queued: string[] = [];
    for (let i = 1; i <= 6; i++) queued.push(await post('u2o', { label: `e${i}` }));
    const before = await listChannel(r, channel('u2o'));
    assert.deepEqual(statusCounts(before), { queued: 7 });
    const attemptsBefore = a.received.length;

    const changed = await patch('u2o', { ordered: true });
    assert.equal(changed['ordered'], true);
    switched = true;
    agent = await startAgent(need(stateDir, 'state dir'), routes);
    await waitDelivered(r, channel('u2o'), [x, ...queued], 60_000);

    console.log(
      `unordered → ordered: ${attemptsBefore} attempt(s) of x before, then ${seenAfter.join(', ')}; ` +
        `max in flight after the switch ${inFlightAfter.max}`,
    );
    assert.deepEqual(
      seenAfter,
      ['x', 'x', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6'],
      'x first (fails, then its retry), then the rest in arrival order',
    );
    assert.equal(inFlightAfter.max, 1, 'one at a time after the switch');
    const xAfter = await getEvent(r, x);
    assert.equal(xAfter.attemptCount, attemptsBefore + 2);
    await assertAllDelivered('u2o', [x, ...queued], attemptsBefore + 2 + queued.length);
  },
);
