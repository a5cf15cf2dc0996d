/**
 * `--replicas N`: relays on one PostgreSQL database behind a round-robin load balancer, agents
 * paired and connected through it (their tunnels spread over the relays). Run once with one
 * relay and once with N: the delivered rate under the same load, and the database statements
 * per delivered event; with N, kill -9 of the relay holding the most agents under load, and the
 * time until each of its agents, connected again through the load balancer, delivers again.
 */
import { randomBytes } from 'node:crypto';
import type { Bench } from './context.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS } from './load-job.ts';
import {
  adminApi,
  createChannel,
  pairAgent,
  startAgent,
  startRelay,
  writeAgentConfig,
  type Relay,
  type Replica,
} from './postern.ts';
import { exited } from './children.ts';
import type { LogProcess } from './log-process.ts';
import { RoundRobinProxy } from './round-robin.ts';

/** Agents on the channel, spread over the relays by the load balancer. */
export const REPLICA_AGENTS = 6;
/** The claims' lease (--lease-ms): how soon the dead relay's claimed events go to another. */
export const REPLICA_LEASE_MS = 10_000;
/** Load during the failover measure, and when in it the relay is killed. */
const FAILOVER_LOAD_S = 10;
const KILL_AFTER_MS = 3_000;

export type ReplicasRun = {
  replicas: number;
  agents: number;
  /** Agents connected to each relay (its postern_agents_connected) before the load. */
  placement: number[];
  accepted: number;
  acceptedPerS: number;
  /** Distinct events at the app while the load ran, per second of load. */
  deliveredPerS: number;
  delivered: number;
  lost: number;
  duplicates: number;
  /** Transactions (each one statement: the store sends no BEGIN) per delivered event. */
  statementsPerDelivered: number | null;
  commitsPerDelivered: number | null;
};

export type FailoverRun = {
  killedAgents: number;
  /** Per agent of the killed relay: kill -9 → its first request to the app after reconnecting. */
  resumeMs: number[];
  /** The slowest of them: the failover time. */
  worstResumeMs: number | null;
  accepted: number;
  delivered: number;
  lost: number;
  duplicates: number;
  /** kill -9 → the last accepted event at the app (the dead relay's claims wait for the lease). */
  allDeliveredMs: number | null;
};

export type ReplicasResult = {
  leaseMs: number;
  one: ReplicasRun;
  many: ReplicasRun;
  failover: FailoverRun;
};

interface Cluster {
  relays: Relay[];
  lb: RoundRobinProxy;
  /** A handle whose URL is the load balancer's (admin API, ingress, pairing). */
  front: Relay;
  agents: LogProcess[];
  ingress: string;
  stop(): Promise<void>;
}

async function agentsConnected(relay: Relay): Promise<number> {
  const res = await fetch(`${relay.url}/metrics`, {
    headers: { authorization: `Bearer ${relay.token}` },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics → ${res.status}`);
  const m = /^postern_agents_connected(?:\{[^}]*\})? (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function startCluster(b: Bench, n: number): Promise<Cluster> {
  const pg = b.pg;
  if (!pg) throw new Error('--replicas runs on PostgreSQL');
  const made = await pg.create();
  const lb = await RoundRobinProxy.start();
  const shared: Replica = {
    database: { name: made.name, on: pg },
    adminToken: randomBytes(24).toString('hex'),
    secretsKey: randomBytes(32).toString('base64'),
    publicUrl: lb.url,
    leaseMs: REPLICA_LEASE_MS,
  };
  const relays: Relay[] = [];
  // One after the other: the first applies the migrations.
  for (let i = 0; i < n; i++) {
    const relay = await startRelay(b.kids, pg, undefined, shared);
    relays.push(relay);
    lb.add(relay.port);
  }
  const front: Relay = { ...relays[0]!, url: lb.url };
  const channel = await createChannel(relays[0]!, { name: 'bench-replicas' });
  const agents: LogProcess[] = [];
  for (let i = 0; i < REPLICA_AGENTS; i++) {
    // Each relay's copy of the control state follows the others' writes a few ms later.
    for (const r of relays) await seen(r, `/api/channels/${channel.id}`);
    const { stateDir } = await pairAgent(b.kids, front, `bench-agent-${i}`, [channel.id]);
    const config = await writeAgentConfig(stateDir, [
      { channel: channel.name, target: `${b.app.url}/a${i}` },
    ]);
    agents.push((await startAgent(b.kids, stateDir, config)).proc);
  }
  return {
    relays,
    lb,
    front,
    agents,
    ingress: `${lb.url}/h/${channel.id}`,
    stop: async () => {
      for (const a of agents) await b.kids.stop(a.child);
      for (const r of relays) await b.kids.stop(r.proc.child);
      await lb.close();
      await pg.drop(made.name);
    },
  };
}

async function seen(relay: Relay, route: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await adminApi(relay, 'GET', route);
      return;
    } catch (err) {
      if (i > 200) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

async function measureRate(b: Bench, c: Cluster): Promise<ReplicasRun> {
  const pg = b.pg!;
  const dbName = c.relays[0]!.database!.name;
  const placement = await Promise.all(c.relays.map(agentsConnected));
  await warmUp(b, c.ingress, b.relayWarmup, b.opts.connections);
  const db0 = await pg.counters(dbName);
  const r = await b.load.run(b.job(c.ingress, { collectIds: true }));
  const window = await b.app.stats({ from: r.startedAt, to: r.lastResponseAt });
  const done = await awaitDelivery(b, r.ids, `replicas ×${c.relays.length}`);
  const db1 = await pg.counters(dbName);
  const delivered = done.expected - done.missing;
  const statements = db1.commits + db1.rollbacks - db0.commits - db0.rollbacks;
  await b.app.reset();
  return {
    replicas: c.relays.length,
    agents: c.agents.length,
    placement,
    accepted: r.ids.length,
    acceptedPerS: r.ids.length / elapsedS(r),
    deliveredPerS: window.inWindow / elapsedS(r),
    delivered,
    lost: r.ids.length - delivered,
    duplicates: done.duplicates,
    statementsPerDelivered: delivered ? statements / delivered : null,
    commitsPerDelivered: delivered ? (db1.commits - db0.commits) / delivered : null,
  };
}

async function measureFailover(b: Bench, c: Cluster): Promise<FailoverRun> {
  const counts = await Promise.all(c.relays.map(agentsConnected));
  const victim = c.relays[counts.indexOf(Math.max(...counts))]!;
  await b.app.trackPaths();
  const load = b.load.run(b.job(c.ingress, { durationS: FAILOVER_LOAD_S, collectIds: true }));
  await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
  // Armed before the kill: an agent of the victim logs the drop, then its new session.
  const moved = c.agents.map((a) =>
    a
      .waitForMsg('disconnected from the relay; reconnecting', 5_000)
      .then(() => a.waitForMsg('connected to the relay', 30_000))
      .then(
        () => Date.now(),
        () => null,
      ),
  );
  const killAt = Date.now();
  victim.proc.child.kill('SIGKILL');
  await exited(victim.proc.child);
  b.progress(`failover: killed the relay holding ${Math.max(...counts)} agents`);
  const back = await Promise.all(moved);
  const resumeMs: number[] = [];
  for (let i = 0; i < back.length; i++) {
    const reconnectedAt = back[i];
    if (reconnectedAt === null || reconnectedAt === undefined) continue;
    // Its first request to the app once connected again (not one it was finishing).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const first = (await b.app.firstAfter(reconnectedAt))[`/a${i}`] ?? null;
      if (first !== null) {
        resumeMs.push(first - killAt);
        break;
      }
      if (Date.now() > deadline) throw new Error(`agent ${i} delivered nothing after the kill`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const r = await load;
  const done = await awaitDelivery(b, r.ids, 'failover');
  const delivered = done.expected - done.missing;
  c.relays = c.relays.filter((x) => x !== victim);
  await b.app.reset();
  return {
    killedAgents: resumeMs.length,
    resumeMs,
    worstResumeMs: resumeMs.length ? Math.max(...resumeMs) : null,
    accepted: r.ids.length,
    delivered,
    lost: r.ids.length - delivered,
    duplicates: done.duplicates,
    allDeliveredMs:
      done.missing === 0 && done.lastExpectedAt !== null ? done.lastExpectedAt - killAt : null,
  };
}

export async function runReplicas(b: Bench, n: number): Promise<ReplicasResult> {
  const runs: ReplicasRun[] = [];
  let failover: FailoverRun | null = null;
  for (const count of [1, n]) {
    b.progress(`replicas: ${count} relay(s), ${REPLICA_AGENTS} agents through a load balancer`);
    const c = await startCluster(b, count);
    try {
      const run = await measureRate(b, c);
      b.progress(
        `replicas ×${count}: ${Math.round(run.deliveredPerS)} delivered/s, ` +
          `${run.statementsPerDelivered?.toFixed(2)} statements per delivered event, ` +
          `agents per relay ${run.placement.join('/')}`,
      );
      runs.push(run);
      if (count === n) {
        failover = await measureFailover(b, c);
        b.progress(
          `failover: deliveries resumed for the killed relay's agents after ` +
            `${failover.resumeMs.join(', ')} ms`,
        );
      }
    } finally {
      await c.stop();
    }
  }
  const [one, many] = runs;
  if (!one || !many || !failover) throw new Error('replicas: a run is missing');
  return { leaseMs: REPLICA_LEASE_MS, one, many, failover };
}

export function checkReplicas(b: Bench, r: ReplicasResult): void {
  for (const run of [r.one, r.many]) {
    b.check(
      `replicas ×${run.replicas}: nothing lost`,
      run.lost === 0,
      `${run.lost} of ${run.accepted} never reached the app`,
    );
  }
  b.check(
    'replicas: agents on more than one relay',
    r.many.placement.filter((x) => x > 0).length > 1,
    `agents per relay: ${r.many.placement.join('/')}`,
  );
  const f = r.failover;
  b.check('failover: nothing lost', f.lost === 0, `${f.lost} of ${f.accepted} not delivered`);
  b.check(
    "failover: the killed relay's agents deliver again",
    f.killedAgents > 0,
    `${f.killedAgents} agents moved`,
  );
}

/** Rows for the printed table: measure, one relay, N relays. */
export function replicasRows(r: ReplicasResult): string[][] {
  const n = r.many.replicas;
  const f = r.failover;
  const fmt = (x: number | null, d = 0) => (x === null ? 'n/a' : x.toFixed(d));
  return [
    ['replicas', `1 relay`, `${n} relays`],
    ['agents per relay', r.one.placement.join('/'), r.many.placement.join('/')],
    ['accepted/s', fmt(r.one.acceptedPerS), fmt(r.many.acceptedPerS)],
    ['delivered/s (during the load)', fmt(r.one.deliveredPerS), fmt(r.many.deliveredPerS)],
    [
      `delivered/s, ${n} relays vs 1`,
      '',
      `${((100 * r.many.deliveredPerS) / r.one.deliveredPerS).toFixed(0)} %`,
    ],
    [
      'statements per delivered event',
      fmt(r.one.statementsPerDelivered, 2),
      fmt(r.many.statementsPerDelivered, 2),
    ],
    [
      'commits per delivered event',
      fmt(r.one.commitsPerDelivered, 2),
      fmt(r.many.commitsPerDelivered, 2),
    ],
    [
      'lost / duplicates',
      `${r.one.lost} / ${r.one.duplicates}`,
      `${r.many.lost} / ${r.many.duplicates}`,
    ],
    [
      'kill -9 → its agents deliver again',
      '',
      `${f.resumeMs.map((x) => x.toFixed(0)).join(', ')} ms (worst ${fmt(f.worstResumeMs)} ms)`,
    ],
    [
      `kill -9 → every accepted event delivered (lease ${r.leaseMs / 1000} s)`,
      '',
      `${fmt(f.allDeliveredMs)} ms`,
    ],
    [
      'failover: accepted / delivered / lost / duplicates',
      '',
      `${f.accepted} / ${f.delivered} / ${f.lost} / ${f.duplicates}`,
    ],
  ];
}
