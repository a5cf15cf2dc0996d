/** `GET /api/stats` as the charts view reads it, decoded at the boundary. */
import { list, num, obj, optNum, str, type Obj } from './decode.ts';

export type StatsRange = 'hour' | 'day';

export interface Latency {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface StatsPoint {
  /** The point's start, ms since epoch. */
  at: number;
  received: number;
  delivered: number;
  failed: number;
  latencyMs: Latency;
}

export interface StatsSeries {
  since: number;
  until: number;
  stepSeconds: number;
  points: StatsPoint[];
  totals: Omit<StatsPoint, 'at'>;
}

function time(o: Obj, key: string): number {
  const ms = Date.parse(str(o, key));
  if (Number.isNaN(ms)) throw new Error(`${key}: expected a date-time`);
  return ms;
}

function latency(o: Obj): Latency {
  const l = obj(o['latencyMs'], 'latencyMs');
  return { p50: optNum(l, 'p50'), p90: optNum(l, 'p90'), p99: optNum(l, 'p99') };
}

function sums(o: Obj): Omit<StatsPoint, 'at'> {
  return {
    received: num(o, 'received'),
    delivered: num(o, 'delivered'),
    failed: num(o, 'failed'),
    latencyMs: latency(o),
  };
}

export function decodeStats(value: unknown): StatsSeries {
  const o = obj(value, 'stats');
  return {
    since: time(o, 'since'),
    until: time(o, 'until'),
    stepSeconds: num(o, 'stepSeconds'),
    points: list(o, 'points', (p) => {
      const po = obj(p, 'point');
      return { at: time(po, 'at'), ...sums(po) };
    }),
    totals: sums(obj(o['totals'], 'totals')),
  };
}
