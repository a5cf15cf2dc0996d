/**
 * `GET /api/stats`: received, delivered and failed events and first-delivery latency
 * percentiles over a time range, as a series of points, from the store's per-minute statistics
 * (every relay's, kept as events go through: nothing is counted in the browser or here).
 */
import type Router from '@koa/router';
import { LATENCY_BUCKETS, latencyQuantile, MINUTE_MS } from '../../store/minute-stats.ts';
import type { MinuteStats } from '../../store/types.ts';
import type { RelayContext } from '../context.ts';
import { fail, iso } from './common.ts';

/** The steps a series may have, in minutes: the smallest that gives at most MAX_POINTS. */
const STEPS_MIN = [1, 5, 15, 60, 360, 1_440] as const;
export const MAX_POINTS = 240;

/** The named ranges: how long, and their step. */
const RANGES = {
  hour: { spanMs: 3_600_000, stepMs: MINUTE_MS },
  day: { spanMs: 86_400_000, stepMs: 15 * MINUTE_MS },
} as const;

export interface LatencyView {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface StatsSums {
  received: number;
  delivered: number;
  failed: number;
  latencyMs: LatencyView;
}

export interface StatsPoint extends StatsSums {
  /** The point's start. */
  at: string;
}

/** A time in a query: ms since epoch, or ISO 8601. */
function readTime(raw: unknown, key: string): number | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 64) {
    return fail(key, 'ms since epoch or an ISO 8601 date-time');
  }
  const ms = /^\d{1,15}$/.test(raw) ? Number(raw) : Date.parse(raw);
  return Number.isNaN(ms) ? fail(key, 'ms since epoch or an ISO 8601 date-time') : ms;
}

const ceilTo = (t: number, step: number) => Math.ceil(t / step) * step;
const floorTo = (t: number, step: number) => Math.floor(t / step) * step;

/** The aligned range and step a query asks for. */
export function statsWindow(
  query: Record<string, unknown>,
  now: number,
): { since: number; until: number; stepMs: number } {
  const rangeName = query['range'];
  const since = readTime(query['since'], 'since');
  const until = readTime(query['until'], 'until');
  if (rangeName !== undefined) {
    if (since !== undefined || until !== undefined) fail('range', 'no since or until with it');
    if (rangeName !== 'hour' && rangeName !== 'day') return fail('range', '"hour" or "day"');
  }
  if (since === undefined) {
    if (until !== undefined) return fail('since', 'a start, with until');
    const r = RANGES[rangeName === 'day' ? 'day' : 'hour'];
    // The current step included, partly elapsed.
    const end = floorTo(now, r.stepMs) + r.stepMs;
    return { since: end - r.spanMs, until: end, stepMs: r.stepMs };
  }
  const end = until ?? now;
  if (end <= since) return fail('until', 'after since');
  const steps = STEPS_MIN.map((m) => m * MINUTE_MS);
  const stepMs = steps.find((s) => (ceilTo(end, s) - floorTo(since, s)) / s <= MAX_POINTS);
  if (stepMs === undefined) return fail('since', `at most ${MAX_POINTS} days before until`);
  return { since: floorTo(since, stepMs), until: ceilTo(end, stepMs), stepMs };
}

/** Folds minutes into points of `stepMs` from `since` to `until`, empty ones included. */
export function foldSeries(
  minutes: readonly MinuteStats[],
  since: number,
  until: number,
  stepMs: number,
): { points: StatsPoint[]; totals: StatsSums } {
  const n = Math.round((until - since) / stepMs);
  const sums = Array.from({ length: n }, () => ({
    received: 0,
    delivered: 0,
    failed: 0,
    hist: new Array<number>(LATENCY_BUCKETS).fill(0),
  }));
  const total = {
    received: 0,
    delivered: 0,
    failed: 0,
    hist: new Array<number>(LATENCY_BUCKETS).fill(0),
  };
  for (const m of minutes) {
    const k = Math.floor((m.minute - since) / stepMs);
    const into = sums[k];
    if (!into) continue;
    for (const s of [into, total]) {
      s.received += m.received;
      s.delivered += m.delivered;
      s.failed += m.failed;
      m.latency.forEach((c, b) => (s.hist[b] = (s.hist[b] ?? 0) + c));
    }
  }
  const view = (s: typeof total): StatsSums => ({
    received: s.received,
    delivered: s.delivered,
    failed: s.failed,
    latencyMs: {
      p50: latencyQuantile(s.hist, 0.5),
      p90: latencyQuantile(s.hist, 0.9),
      p99: latencyQuantile(s.hist, 0.99),
    },
  });
  return {
    points: sums.map((s, k) => ({ at: new Date(since + k * stepMs).toISOString(), ...view(s) })),
    totals: view(total),
  };
}

export function statsRoutes(router: Router, relay: RelayContext): void {
  router.get('/stats', async (ctx) => {
    const { since, until, stepMs } = statsWindow(ctx.query, relay.now());
    const minutes = await relay.store.minuteStats({ since, until });
    const { points, totals } = foldSeries(minutes, since, until, stepMs);
    ctx.body = {
      since: iso(since),
      until: iso(until),
      stepSeconds: stepMs / 1_000,
      points,
      totals,
    };
  });
}
