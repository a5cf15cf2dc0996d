/**
 * Scenario 2: webhooks POSTed to an async channel for a fixed time, every accepted one followed
 * to the app; and scenario 5, the relay's and the agent's CPU time over the same run.
 */
import type { Bench } from './context.ts';
import { STORE_FUNCTIONS, type DatabaseCounters, type StoreFunction } from './databases.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS, type Latency } from './load-job.ts';
import type { Relay } from './postern.ts';
import { cpuSeconds, rssBytes } from './proc-stats.ts';
import { metricsDelta, scrapeMetrics } from './relay-metrics.ts';

export type AsyncResult = {
  connections: number;
  durationS: number;
  /** Answers received by the load generator, and how many were 2xx (durably accepted). */
  answered: number;
  accepted: number;
  acceptedPerS: number;
  non2xx: number;
  statusCounts: Record<string, number>;
  errors: number;
  /** Time for the relay to answer (accept) a webhook. */
  ingestLatencyMs: Latency;
  /** Distinct events that reached the app while the load ran, and per second. */
  deliveredInWindow: number;
  deliveredPerS: number;
  /** From the last answer of the load to the arrival of the last accepted event at the app. */
  drainS: number | null;
  /** Accepted events that reached the app; lost = accepted - delivered. */
  delivered: number;
  lost: number;
  /** Events that reached the app whose 202 the load generator never saw (cut off at the end). */
  unacknowledgedDelivered: number;
  duplicates: number;
  /** The relay's own mean time to make a webhook durable (write + fdatasync, group commit). */
  meanCommitMs: number | null;
  /** Delivery attempts the agent reported, by outcome: anything but `delivered` is a retry. */
  attempts: Record<string, number>;
  /** Events sent to the agent as soon as stored, claimed in their append (no claim after). */
  handedOff: number;
  /** On PostgreSQL only. */
  database: DatabaseUse | null;
};

/**
 * On PostgreSQL: what the relay sent its database for the events of the run, from their
 * ingest to their delivery (pg_stat_database of the relay's own database). The store sends
 * every statement on its own, outside BEGIN … COMMIT (group commit puts many events in one
 * statement), so each is one transaction: transactions count the statements, round trips.
 */
export type DatabaseUse = {
  transactions: number;
  commits: number;
  rollbacks: number;
  /** Per accepted event. */
  statementsPerEvent: number;
  commitsPerEvent: number;
  /**
   * Calls of the store's functions per accepted event, each a statement of its own (null when
   * the server did not count them); the rest of the statements are appends and reads.
   */
  callsPerEvent: Record<StoreFunction, number> | null;
};

export type CpuUse = { cpuS: number; perThousandS: number } | null;

export type CpuResult = { webhooks: number; relay: CpuUse; agent: CpuUse };

function databaseUse(
  before: DatabaseCounters | null,
  after: DatabaseCounters | null,
  accepted: number,
): DatabaseUse | null {
  if (!before || !after || accepted === 0) return null;
  const commits = after.commits - before.commits;
  const rollbacks = after.rollbacks - before.rollbacks;
  const calls0 = before.calls;
  const calls1 = after.calls;
  return {
    transactions: commits + rollbacks,
    commits,
    rollbacks,
    statementsPerEvent: (commits + rollbacks) / accepted,
    commitsPerEvent: commits / accepted,
    callsPerEvent:
      calls0 && calls1
        ? (Object.fromEntries(
            STORE_FUNCTIONS.map((f) => [f, (calls1[f] - calls0[f]) / accepted]),
          ) as Record<StoreFunction, number>)
        : null,
  };
}

function cpuUse(before: number | null, after: number | null, webhooks: number): CpuUse {
  if (before === null || after === null || webhooks === 0) return null;
  return { cpuS: after - before, perThousandS: (after - before) / (webhooks / 1000) };
}

export async function runAsync(
  b: Bench,
  relay: Relay,
  ingress: string,
  agentPid: number,
): Promise<{ async: AsyncResult; cpu: CpuResult; relayRssBytes: number | null }> {
  const pids = { relay: relay.proc.pid, agent: agentPid };
  await warmUp(b, ingress, b.relayWarmup, b.opts.connections);
  const db = relay.database;
  const db0 = db ? await db.on.counters(db.name) : null;
  const metrics0 = await scrapeMetrics(relay);
  const relayCpu0 = cpuSeconds(pids.relay);
  const agentCpu0 = cpuSeconds(pids.agent);
  const r = await b.load.run(b.job(ingress, { collectIds: true }));
  const window = await b.app.stats({ from: r.startedAt, to: r.lastResponseAt });
  b.progress(`async: ${r.ok2xx} accepted in ${elapsedS(r).toFixed(1)} s; waiting for the tail`);
  const done = await awaitDelivery(b, r.ids, 'async tail');
  // CPU is read once the tail is delivered: the work of a webhook ends at the app, not at 202.
  const relayCpu1 = cpuSeconds(pids.relay);
  const agentCpu1 = cpuSeconds(pids.agent);
  const metrics = metricsDelta(metrics0, await scrapeMetrics(relay));
  const db1 = db ? await db.on.counters(db.name) : null;
  const delivered = done.expected - done.missing;
  const accepted = r.ids.length;
  b.check(
    'async: every 2xx names its event',
    accepted === r.ok2xx,
    `${r.ok2xx} answers 2xx, ${accepted} with an event id`,
  );
  return {
    async: {
      connections: b.opts.connections,
      durationS: elapsedS(r),
      answered: r.completed,
      accepted,
      acceptedPerS: accepted / elapsedS(r),
      non2xx: r.non2xx,
      statusCounts: r.statusCounts,
      errors: r.errors,
      ingestLatencyMs: r.latencyMs,
      deliveredInWindow: window.inWindow,
      deliveredPerS: window.inWindow / elapsedS(r),
      drainS:
        done.missing === 0 && done.lastExpectedAt !== null
          ? Math.max(0, (done.lastExpectedAt - r.lastResponseAt) / 1000)
          : null,
      delivered,
      lost: accepted - delivered,
      unacknowledgedDelivered: done.unique - delivered,
      duplicates: done.duplicates,
      ...metrics,
      database: databaseUse(db0, db1, accepted),
    },
    cpu: {
      webhooks: accepted,
      relay: cpuUse(relayCpu0, relayCpu1, accepted),
      agent: cpuUse(agentCpu0, agentCpu1, accepted),
    },
    relayRssBytes: rssBytes(pids.relay),
  };
}
