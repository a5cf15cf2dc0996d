/**
 * Three relays on one PostgreSQL database behind a round-robin proxy, agents paired through
 * it (their tunnels land on different replicas), and the faults a cluster must survive: kill -9
 * of a replica mid-burst, a replica stopped (SIGSTOP) for longer than its lease, the database
 * away under load, and one replica's database connections ended by the server. Each: every
 * acknowledged webhook delivered, none lost, each duplicate a documented at-least-once case,
 * and per-key order exact on an ordered channel whose agents sit on several replicas.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ServerResponse } from 'node:http';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import { eventually } from '../helpers/processes.ts';
import {
  burst,
  burstDispatcher,
  eventIdOf,
  lineTime,
  waitAllDelivered,
  type Sent,
} from '../fault/helpers.ts';
import { Cluster } from './cluster.ts';
import {
  agentOf,
  describe,
  orderViolations,
  sendOrdered,
  tally,
  type Fault,
  type OrderedRun,
} from './support.ts';

const REPLICAS = 3;
const AGENTS = 10;
/** Short (POSTERN_LEASE_MS, --lease-ms), so that the stall test need not wait 30 s. */
const LEASE_MS = 3_000;
const HEARTBEAT_MS = 1_000;
const BURST = 600;
const RATE = 150;
/** The fault starts once the app has this many of the burst. */
const FAULT_AFTER = 150;
const KEYS = 4;
const PER_KEY = 30;
const SETTLE_MS = 45_000;

let cluster: Cluster | undefined;
let app: TestApp | undefined;
const http = burstDispatcher(12);
let burstChannel = { id: '', name: 'ha-burst' };
let orderedChannel = { id: '', name: 'ha-ordered' };

before(async () => {
  app = await startApp((_req, res) => void setTimeout(() => res.end('ok'), 2 + Math.random() * 8));
  cluster = await Cluster.start({
    replicas: REPLICAS,
    leaseMs: LEASE_MS,
    heartbeatMs: HEARTBEAT_MS,
  });
  const c = cluster;
  burstChannel = await c.handle.api('POST', '/api/channels', { name: 'ha-burst' });
  orderedChannel = await c.handle.api('POST', '/api/channels', {
    name: 'ha-ordered',
    ordered: true,
    orderingKey: { header: 'x-key' },
  });
  await c.waitSeen(`/api/channels/${burstChannel.id}`);
  await c.waitSeen(`/api/channels/${orderedChannel.id}`);
  await c.startAgents(AGENTS, [burstChannel, orderedChannel], app);
  await c.waitAgentsPlaced();
});

after(async () => {
  await cluster?.stop();
  await app?.close();
  await http.close();
});

function need<T>(v: T | undefined): T {
  assert.ok(v !== undefined);
  return v;
}

/** Agent indexes (their route paths) of the agents with a session on replica `i`. */
function agentIndexesOn(c: Cluster, i: number): Set<number> {
  const ids = c.agentsOn(i);
  const out = new Set<number>();
  c.agentIds.forEach((id, n) => {
    if (ids.has(id)) out.add(n);
  });
  return out;
}

/** The running replica holding the most agents. */
function busiest(c: Cluster): number {
  const counts = c.placement();
  return counts.indexOf(Math.max(...counts));
}

interface Run {
  sent: Sent[];
  ordered: OrderedRun;
  faults: Fault[];
}

/**
 * A burst on the unordered channel and an ordered stream together; `fault` runs once the app
 * has FAULT_AFTER of the burst and returns the fault's description when it is over.
 */
async function underLoad(label: string, fault: () => Promise<Fault>): Promise<Run> {
  const c = need(cluster);
  const a = need(app);
  const base = a.received.length;
  let started: Promise<Fault> | undefined;
  const [sent, ordered] = await Promise.all([
    burst({
      url: `${c.lb.url}/h/${burstChannel.id}/${label}`,
      count: BURST,
      inFlight: 10,
      ratePerSec: RATE,
      dispatcher: http,
      deadlineMs: 60_000,
      label,
      onAnswer: () => {
        if (!started && a.received.length - base >= FAULT_AFTER) started = fault();
      },
    }),
    sendOrdered({
      url: `${c.lb.url}/h/${orderedChannel.id}/${label}`,
      keys: KEYS,
      perKey: PER_KEY,
      dispatcher: http,
      label: `${label}-ordered`,
      deadlineMs: 90_000,
      gapMs: 60,
    }),
  ]);
  assert.ok(started, `the fault never started (${a.received.length - base} received)`);
  const faults = [await started];
  return { sent, ordered, faults };
}

/** Waits for every event of `ids` to be delivered; on a timeout, says what became of them. */
async function explained(c: Cluster, channelId: string, ids: string[]): Promise<void> {
  try {
    await waitAllDelivered(c.handle, channelId, ids, SETTLE_MS);
  } catch (err) {
    const stuck: string[] = [];
    for (const id of ids) {
      const e = await c.handle.api<{ status: string }>('GET', `/api/events/${id}`);
      if (e.status !== 'delivered') stuck.push(id);
    }
    const rows = await c.query('SELECT * FROM postern_pending WHERE event_id = ANY($1)', [
      stuck.slice(0, 5),
    ]);
    const events = await Promise.all(
      stuck.slice(0, 3).map((id) => c.handle.api('GET', `/api/events/${id}`)),
    );
    throw new Error(
      `${(err as Error).message}\nnot delivered: ${stuck.length}\n` +
        `events: ${JSON.stringify(events)}\npending rows: ${JSON.stringify(rows)}\n` +
        `relay lines:\n${c.linesMentioning(stuck.slice(0, 3)).join('\n')}`,
    );
  }
}

/** Waits for every acknowledged event to be delivered, then checks and prints the counts. */
async function check(label: string, run: Run): Promise<void> {
  const c = need(cluster);
  const a = need(app);
  const ackedBurst = run.sent.filter((s) => s.status === 202 && s.id !== null);
  const ackedOrdered = run.ordered.sent.filter((s) => s.status === 202 && s.id !== null);
  await explained(
    c,
    burstChannel.id,
    ackedBurst.map((s) => s.id!),
  );
  await explained(
    c,
    orderedChannel.id,
    ackedOrdered.map((s) => s.id!),
  );
  // The store says delivered once the ack is settled: the app has had every request by then.
  const received: Received[] = a.received;
  const t = tally(run.sent, received, run.faults);
  const o = tally(run.ordered.sent, received, run.faults);
  console.log(describe(`${label}, unordered`, run.sent.length, t));
  console.log(describe(`${label}, ordered`, run.ordered.sent.length, o));
  for (const f of run.faults) {
    console.log(`${label}: fault ${f.what}, ${f.until - f.from} ms, agents hit: ${[...f.agents]}`);
    const warned = c.warnings(f.from - 5_000);
    console.log(`${label}: ${warned.length} relay warnings since the fault, the first:`);
    for (const w of warned.slice(0, 3)) console.log(`  ${w.slice(0, 400)}`);
  }
  for (const [what, x] of [
    ['unordered', t],
    ['ordered', o],
  ] as const) {
    assert.ok(x.acknowledged > 0, `${what}: nothing acknowledged`);
    assert.equal(x.delivered, x.acknowledged, `${what}: lost ${x.lost.join(', ')}`);
    assert.deepEqual(x.lost, []);
    assert.deepEqual(x.wrongBody, [], `${what}: bodies changed`);
    assert.equal(x.reIdentified, 0, `${what}: a body under two acknowledged ids`);
    assert.deepEqual(
      x.undocumented,
      [],
      `${what}: duplicates no fault explains; relay lines:\n` +
        c.linesMentioning(x.undocumented.map((u) => u.split(' ')[0]!)).join('\n'),
    );
    assert.deepEqual(x.unexplained, [], `${what}: deliveries of requests never sent`);
  }
  assert.equal(o.acknowledged, KEYS * PER_KEY);
  assert.deepEqual(orderViolations(run.ordered, received), [], 'per-key order');
  for (const s of run.sent) {
    if (s.status === 503) assert.ok(s.retryAfter, '503 without Retry-After');
    else if (s.status !== 202) assert.equal(s.status, null, `unexpected answer ${s.status}`);
  }
}

test('an ordered channel with its agents on several replicas: per-key order exact', async () => {
  const c = need(cluster);
  const placement = c.placement();
  console.log(`agents per replica: ${placement.join(', ')}`);
  assert.ok(placement.filter((n) => n > 0).length >= 2, `agents on one replica: ${placement}`);
  const a = need(app);
  const ordered = await sendOrdered({
    url: `${c.lb.url}/h/${orderedChannel.id}/calm`,
    keys: KEYS,
    perKey: PER_KEY,
    dispatcher: http,
    label: 'calm-ordered',
    deadlineMs: 60_000,
    gapMs: 0,
  });
  const run: Run = { sent: [], ordered, faults: [] };
  const ids = ordered.sent.filter((s) => s.status === 202).map((s) => s.id!);
  await explained(c, orderedChannel.id, ids);
  const o = tally(ordered.sent, a.received, []);
  console.log(describe('no fault, ordered', ordered.sent.length, o));
  assert.equal(o.acknowledged, KEYS * PER_KEY);
  assert.equal(o.delivered, KEYS * PER_KEY);
  assert.equal(o.duplicates, 0);
  assert.deepEqual(orderViolations(run.ordered, a.received), []);
  // Several replicas' agents took part.
  const by = new Set(a.received.filter((r) => r.url.includes('/calm')).map((r) => agentOf(r)));
  assert.ok(by.size >= 2, `one agent delivered everything: ${[...by]}`);
});

test('kill -9 of a replica mid-burst: every acknowledged webhook delivered, the agents move', async () => {
  const c = need(cluster);
  const a = need(app);
  const victim = busiest(c);
  const hit = agentIndexesOn(c, victim);
  let resumedAt = 0;
  const run = await underLoad('kill', async () => {
    const from = Date.now();
    await c.kill(victim);
    // Deliveries resume for its agents once they are connected to another replica: the first
    // request one of them makes after its new session (not one it was finishing).
    const n = a.received.length;
    for (;;) {
      if (Date.now() - from > 60_000) throw new Error('no delivery by its agents after the kill');
      const later = a.received.slice(n).find((r) => {
        const agent = c.agents[agentOf(r)];
        if (!agent || !hit.has(agentOf(r))) return false;
        const back = agent.proc.lines.find(
          (l) => l.msg === 'connected to the relay' && lineTime(l) > from,
        );
        return back !== undefined && r.at >= lineTime(back);
      });
      if (later) {
        resumedAt = later.at;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return {
      what: `kill -9 of replica ${victim}`,
      agents: hit,
      from,
      until: Date.now(),
      database: false,
    };
  });
  await check('kill -9', run);
  const f = run.faults[0]!;
  console.log(`kill -9: deliveries resumed for the victim's agents ${resumedAt - f.from} ms after`);
  await c.waitAgentsPlaced();
  await c.restart(victim);
});

test('SIGSTOP of a replica past its lease, then SIGCONT: its claims go to the others', async () => {
  const c = need(cluster);
  const a = need(app);
  const victim = busiest(c);
  const hit = agentIndexesOn(c, victim);
  let deliveredWhileStopped = 0;
  const run = await underLoad('stall', async () => {
    const from = Date.now();
    c.pause(victim);
    const n = a.received.length;
    // Longer than the lease: its claims must run out and be delivered by the others.
    await new Promise((r) => setTimeout(r, LEASE_MS * 2));
    deliveredWhileStopped = a.received.length - n;
    c.resume(victim);
    return {
      what: `SIGSTOP of replica ${victim}`,
      agents: hit,
      from,
      until: Date.now(),
      database: false,
    };
  });
  await check('SIGSTOP', run);
  console.log(`SIGSTOP: ${deliveredWhileStopped} deliveries while the replica was stopped`);
  assert.ok(deliveredWhileStopped > 0, 'nothing delivered while a replica was stopped');
  await c.waitAgentsPlaced();
});

test('the database away under load: 503 with Retry-After, every 202 delivered', async () => {
  const c = need(cluster);
  const all = new Set(c.agentIds.map((_, n) => n));
  const run = await underLoad('dbaway', async () => {
    const from = Date.now();
    c.dbProxy.refuse();
    c.dbProxy.cutAll();
    await new Promise((r) => setTimeout(r, 3_000));
    c.dbProxy.heal();
    return { what: 'database unreachable', agents: all, from, until: Date.now(), database: true };
  });
  await check('database away', run);
  const refused = run.sent.filter((s) => s.status === 503).length;
  console.log(`database away: ${refused} answered 503`);
  await c.waitAgentsPlaced();
});

test("pg_terminate_backend of one replica's connections under load", async () => {
  const c = need(cluster);
  const victim = busiest(c);
  const hit = agentIndexesOn(c, victim);
  let ended = 0;
  const run = await underLoad('terminate', async () => {
    const from = Date.now();
    // After the outage of the test before, the replica's connections come back by themselves
    // (its pool on demand, its feed after a backoff of up to 5 s): end them once there are some.
    for (const deadline = Date.now() + 15_000; ended === 0 && Date.now() < deadline;) {
      ended = await c.terminateBackends(victim);
      if (ended === 0) await new Promise((r) => setTimeout(r, 100));
    }
    return {
      what: `pg_terminate_backend of replica ${victim}`,
      agents: hit,
      from,
      until: Date.now(),
      database: true,
    };
  });
  console.log(`pg_terminate_backend: ${ended} connections ended`);
  assert.ok(ended > 0, 'no connection of the replica found');
  await check('pg_terminate_backend', run);
});

test('ordered: the replica delivering a key’s head dies mid-delivery; the key stays in order', async () => {
  const c = need(cluster);
  const a = need(app);
  const answer = a.respond;
  // The app holds the first request of key k0 until the relay that sent it is dead.
  const held: { req: Received; res: ServerResponse }[] = [];
  a.respond = (req, res) => {
    const first =
      req.url.includes('/midkill') && req.headers['x-key'] === 'k0' && held.length === 0;
    if (first) held.push({ req, res });
    else void answer(req, res);
  };
  let victim = -1;
  let hit = new Set<number>();
  let killedAt = 0;
  const sending = sendOrdered({
    url: `${c.lb.url}/h/${orderedChannel.id}/midkill`,
    keys: 2,
    perKey: 15,
    dispatcher: http,
    label: 'midkill',
    deadlineMs: 60_000,
    gapMs: 20,
  });
  try {
    const head = await eventually(() => held[0], 30_000, 'the head of k0 at the app');
    const agentId = c.agentIds[agentOf(head.req)]!;
    victim = c.replicas.findIndex((r) => !r.paused && c.agentsOn(r.index).has(agentId));
    assert.ok(victim >= 0, `no replica holds agent ${agentOf(head.req)}`);
    hit = agentIndexesOn(c, victim);
    killedAt = Date.now();
    await c.kill(victim);
  } finally {
    // The agent finishes its request; its ack has no relay to reach.
    for (const h of held) h.res.end('ok');
    a.respond = answer;
  }
  const ordered = await sending;
  const headId = eventIdOf(held[0]!.req);
  const run: Run = {
    sent: [],
    ordered,
    faults: [
      {
        what: `kill -9 of replica ${victim}, delivering the head of k0`,
        agents: hit,
        from: killedAt,
        until: Date.now(),
        database: false,
      },
    ],
  };
  const ids = ordered.sent.filter((s) => s.status === 202).map((s) => s.id!);
  await explained(c, orderedChannel.id, ids);
  const o = tally(ordered.sent, a.received, run.faults);
  console.log(describe('ordered, replica killed mid-delivery', ordered.sent.length, o));
  assert.equal(o.acknowledged, 30);
  assert.equal(o.delivered, 30);
  assert.deepEqual(o.lost, []);
  assert.deepEqual(o.undocumented, []);
  assert.deepEqual(o.unexplained, []);
  // The head's outcome died with the relay: it was delivered again, before the rest of k0.
  const headCount = a.received.filter((r) => eventIdOf(r) === headId).length;
  assert.equal(headCount, 2, 'the head of k0 delivered again after the lease');
  assert.deepEqual(orderViolations(ordered, a.received), [], 'per-key order');
  await c.restart(victim);
  await c.waitAgentsPlaced();
});
