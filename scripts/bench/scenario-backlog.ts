/**
 * Scenario 4: a fresh relay takes N webhooks while its agent is away, in equal slices, so the
 * ingest rate with an empty queue (first slice) can be set beside the rate with N queued (last
 * slice); then the agent comes back and the backlog drains to the app. One more slice with the
 * agent away, after the drain, measures the empty queue again on a fully warm relay.
 */
import type { Bench } from './context.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS } from './load-job.ts';
import {
  createChannel,
  pairAgent,
  startAgent,
  type Relay,
  startRelay,
  stopRelay,
  waitAgentGone,
  writeAgentConfig,
} from './postern.ts';
import type { LogProcess } from './log-process.ts';
import { cpuSeconds, rssAnonBytes, rssBytes } from './proc-stats.ts';
import { metricsDelta, scrapeMetrics } from './relay-metrics.ts';

export type BacklogSlice = { amount: number; accepted: number; perS: number; queuedAfter: number };

export type BacklogResult = {
  size: number;
  accepted: number;
  non2xx: number;
  errors: number;
  slices: BacklogSlice[];
  /**
   * Ingest with nothing queued: the mean of the first slice and of one more slice sent with
   * the agent away once the backlog had drained; and with the backlog nearly full (last slice).
   */
  ingestEmptyPerS: number;
  ingestEmptyFirstSlicePerS: number;
  ingestEmptyAfterDrainPerS: number;
  ingestFullPerS: number;
  /** ingestFull / ingestEmpty: 1.0 means the backlog costs ingest nothing. */
  fullToEmptyRatio: number;
  /** The claim "ingest with the backlog queued is within 10 % of ingest with none" (ratio ≥ 0.9). */
  withinTenPercent: boolean;
  ingestOverallPerS: number;
  /** The relay's mean time to make a webhook durable while the backlog grew. */
  ingestMeanCommitMs: number | null;
  /** Delivered to the app while the agent was away: must be 0. */
  deliveredWhileAway: number;
  relayRssBytes: { beforeBacklog: number | null; queued: number | null; drained: number | null };
  /** The same, without the pages of memory-mapped files (the store's database). */
  relayRssAnonBytes: {
    beforeBacklog: number | null;
    queued: number | null;
    drained: number | null;
  };
  /** From the agent's "connected to the relay" to the last backlog event at the app. */
  drainS: number | null;
  drainPerS: number | null;
  drained: number;
  lost: number;
  duplicates: number;
  drainCpuS: { relay: number | null; agent: number | null };
  /** Delivery attempts during the drain, by outcome: anything but `delivered` is a retry. */
  drainAttempts: Record<string, number>;
  /** The slice sent to the empty queue after the drain: accepted, and none of it lost. */
  recheck: { sent: number; accepted: number; lost: number };
};

/** Equal slices, the first and the last exactly `s` so their rates compare fairly. */
export function slicesOf(n: number, s: number): number[] {
  if (n <= s) return [n];
  if (n < 2 * s) return [s, n - s];
  const out = [s];
  for (let middle = n - 2 * s; middle > 0; middle -= s) out.push(Math.min(s, middle));
  out.push(s);
  return out;
}

function diff(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : b - a;
}

/** Stops the agent and waits until the relay has noticed: from now on events queue. */
export async function sendAgentAway(b: Bench, relay: Relay, agentId: string, agent: LogProcess) {
  await b.kids.stop(agent.child);
  await waitAgentGone(relay, agentId, 15_000);
}

/**
 * Queues webhooks in slices of the given sizes (the agent away), reporting each slice's ingest
 * rate; `onSlice` runs after each slice, e.g. to sample the relay's memory at that size.
 */
export async function fill(
  b: Bench,
  relay: Relay,
  ingress: string,
  amounts: number[],
  label: string,
  onSlice: (slice: BacklogSlice) => void = () => {},
) {
  const n = amounts.reduce((sum, a) => sum + a, 0);
  const slices: BacklogSlice[] = [];
  const ids: string[] = [];
  let non2xx = 0;
  let errors = 0;
  let busyS = 0;
  for (const amount of amounts) {
    const r = await b.load.run(b.job(ingress, { amount, collectIds: true }));
    if (r.truncated) throw new Error(`${label}: a slice ran out of time`);
    for (const id of r.ids) ids.push(id);
    non2xx += r.non2xx;
    errors += r.errors;
    busyS += elapsedS(r);
    const perS = r.ids.length / elapsedS(r);
    const slice = { amount, accepted: r.ids.length, perS, queuedAfter: ids.length };
    slices.push(slice);
    onSlice(slice);
    const rss = rssBytes(relay.proc.pid);
    b.progress(
      `${label}: ${ids.length} of ${n} queued, ${Math.round(perS)}/s in this slice` +
        (rss === null ? '' : `, relay RSS ${(rss / 2 ** 20).toFixed(0)} MiB`),
    );
  }
  return { slices, ids, non2xx, errors, busyS };
}

export async function runBacklog(b: Bench): Promise<BacklogResult> {
  const n = b.opts.backlog;
  const sliceSize = Math.max(b.opts.connections, Math.min(5_000, Math.round(n / 10)));
  const relay = await startRelay(b.kids, b.databases);
  const channel = await createChannel(relay, { name: 'bench' });
  const { agentId, stateDir } = await pairAgent(b.kids, relay, 'bench-backlog', [channel.id]);
  const config = await writeAgentConfig(stateDir, [{ channel: 'bench', target: `${b.app.url}/` }]);
  // Warm the fresh relay with its agent present, then send the agent away: queue empty.
  let agent = await startAgent(b.kids, stateDir, config);
  await warmUp(b, channel.ingress, b.relayWarmup, b.opts.connections);
  await sendAgentAway(b, relay, agentId, agent.proc);
  await b.app.reset();
  const rssBefore = rssBytes(relay.proc.pid);
  const anonBefore = rssAnonBytes(relay.proc.pid);
  const metrics0 = await scrapeMetrics(relay);

  const filled = await fill(b, relay, channel.ingress, slicesOf(n, sliceSize), 'backlog');
  const { slices, ids } = filled;
  const rssQueued = rssBytes(relay.proc.pid);
  const anonQueued = rssAnonBytes(relay.proc.pid);
  const away = await b.app.stats();
  const metrics1 = await scrapeMetrics(relay);

  const relayCpu0 = cpuSeconds(relay.proc.pid);
  b.progress(`backlog: starting the agent to drain ${ids.length}`);
  agent = await startAgent(b.kids, stateDir, config);
  const agentCpu0 = cpuSeconds(agent.proc.pid);
  const done = await awaitDelivery(b, ids, 'backlog drain');
  const drainCpuS = {
    relay: diff(relayCpu0, cpuSeconds(relay.proc.pid)),
    agent: diff(agentCpu0, cpuSeconds(agent.proc.pid)),
  };
  const rssDrained = rssBytes(relay.proc.pid);
  const anonDrained = rssAnonBytes(relay.proc.pid);
  const drainMetrics = metricsDelta(metrics1, await scrapeMetrics(relay));
  const drainS =
    done.missing === 0 && done.lastExpectedAt !== null
      ? Math.max(0.001, (done.lastExpectedAt - agent.connectedAt) / 1000)
      : null;

  // The first slice ran on a relay that had just been warmed; measure the empty queue once more
  // on this one, fully warm, so that the comparison does not hinge on a single cold-ish sample.
  b.progress(`backlog: the empty queue again, ${sliceSize} webhooks with the agent away`);
  await sendAgentAway(b, relay, agentId, agent.proc);
  const again = await b.load.run(b.job(channel.ingress, { amount: sliceSize, collectIds: true }));
  agent = await startAgent(b.kids, stateDir, config);
  const againDone = await awaitDelivery(b, again.ids, 'empty-queue recheck');
  await b.kids.stop(agent.proc.child);
  await stopRelay(b.kids, relay);

  const emptyBefore = slices[0]?.perS ?? 0;
  const emptyAfter = again.ids.length / elapsedS(again);
  const ingestEmptyPerS = (emptyBefore + emptyAfter) / 2;
  const ingestFullPerS = slices[slices.length - 1]?.perS ?? 0;
  const ratio = ingestEmptyPerS > 0 ? ingestFullPerS / ingestEmptyPerS : 0;
  return {
    size: n,
    accepted: ids.length,
    non2xx: filled.non2xx,
    errors: filled.errors,
    slices,
    ingestEmptyPerS,
    ingestEmptyFirstSlicePerS: emptyBefore,
    ingestEmptyAfterDrainPerS: emptyAfter,
    ingestFullPerS,
    fullToEmptyRatio: ratio,
    withinTenPercent: ratio >= 0.9,
    ingestOverallPerS: ids.length / Math.max(0.001, filled.busyS),
    ingestMeanCommitMs: metricsDelta(metrics0, metrics1).meanCommitMs,
    deliveredWhileAway: away.unique,
    relayRssBytes: { beforeBacklog: rssBefore, queued: rssQueued, drained: rssDrained },
    relayRssAnonBytes: { beforeBacklog: anonBefore, queued: anonQueued, drained: anonDrained },
    drainS,
    drainPerS: drainS === null ? null : ids.length / drainS,
    drained: done.expected - done.missing,
    lost: done.missing,
    duplicates: done.duplicates,
    drainCpuS,
    drainAttempts: drainMetrics.attempts,
    recheck: {
      sent: sliceSize,
      accepted: again.ids.length,
      lost: againDone.missing,
    },
  };
}
