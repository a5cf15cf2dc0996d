/**
 * Per-minute delivery statistics kept by the store as events go through (never computed by
 * scanning events): received, delivered and failed counts, and the delivery latency (receivedAt
 * → the end of the attempt that delivered it) in a fixed histogram of log-spaced buckets, from
 * which percentiles are read. Both stores apply the same definitions; the PostgreSQL store's
 * copy of the bucket edges is in migrations/003_dispatch_batches.sql (postern_latency_bucket).
 */
import type { EventSummary, EventUpdate, MinuteStats } from './types.ts';

export const MINUTE_MS = 60_000;

/**
 * Lower edges of the latency buckets after the first, in ms: bucket 0 is [0, 1), bucket k is
 * [EDGES[k-1], EDGES[k]), the last one is [1 h, ∞). A 1-2-5 series: a percentile read from it
 * is within a factor of 2.5 of the true one.
 */
export const LATENCY_EDGES_MS: readonly number[] = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000, 120_000, 300_000,
  600_000, 1_200_000, 3_600_000,
];

export const LATENCY_BUCKETS = LATENCY_EDGES_MS.length + 1;

/** The start of the minute `at` falls in (ms since epoch). */
export function minuteOf(at: number): number {
  return at - (((at % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);
}

/** The bucket of a latency: how many edges are at or below it (as SQL's width_bucket). */
export function latencyBucket(ms: number): number {
  let k = 0;
  while (k < LATENCY_EDGES_MS.length && LATENCY_EDGES_MS[k]! <= ms) k++;
  return k;
}

/** What one write adds to one minute. */
export interface MinuteDelta {
  minute: number;
  received: number;
  delivered: number;
  failed: number;
  /** The latency bucket of a first delivery (not a replay's), or null. */
  bucket: number | null;
}

/** A new event (not one refused at the edge) counts as received in its minute. */
export function receivedDelta(summary: EventSummary): MinuteDelta | null {
  if (summary.status === 'rejected') return null;
  const minute = minuteOf(summary.receivedAt);
  return { minute, received: 1, delivered: 0, failed: 0, bucket: null };
}

/**
 * What a claim's settle adds: a delivery or a final failure, in the minute the attempt ended
 * (`now` when the update has no attempt). A replay's delivery counts, but not in the latency.
 */
export function outcomeDelta(
  next: EventSummary,
  update: EventUpdate,
  now: number,
): MinuteDelta | null {
  if (update.status !== 'delivered' && update.status !== 'failed') return null;
  const end = update.attempt ? update.attempt.at + update.attempt.durationMs : now;
  const minute = minuteOf(end);
  if (update.status === 'failed') {
    return { minute, received: 0, delivered: 0, failed: 1, bucket: null };
  }
  const bucket = next.replays === 0 ? latencyBucket(Math.max(0, end - next.receivedAt)) : null;
  return { minute, received: 0, delivered: 1, failed: 0, bucket };
}

/** An empty minute. */
export function emptyMinute(minute: number): MinuteStats {
  return {
    minute,
    received: 0,
    delivered: 0,
    failed: 0,
    latency: new Array<number>(LATENCY_BUCKETS).fill(0),
  };
}

/** Adds `delta` to `into` (changed in place). */
export function addDelta(into: MinuteStats, delta: MinuteDelta): void {
  into.received += delta.received;
  into.delivered += delta.delivered;
  into.failed += delta.failed;
  if (delta.bucket !== null) into.latency[delta.bucket] = (into.latency[delta.bucket] ?? 0) + 1;
}

/**
 * The latency at quantile `q` (0 < q <= 1) of a histogram: the upper edge of the bucket that
 * holds it (the last bucket's lower edge for the open-ended one); null when it is empty.
 */
export function latencyQuantile(hist: readonly number[], q: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let k = 0; k < hist.length; k++) {
    seen += hist[k] ?? 0;
    if (seen >= rank) return LATENCY_EDGES_MS[Math.min(k, LATENCY_EDGES_MS.length - 1)]!;
  }
  return LATENCY_EDGES_MS.at(-1)!;
}
