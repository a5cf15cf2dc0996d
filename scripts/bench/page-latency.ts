/**
 * How long the admin API takes to answer one page of the event list, the query an operator's
 * dashboard makes: `GET /api/events?channel=<id>&status=<s>&limit=50`, newest first. Each page
 * is also checked: the right channel and status, newest first, full.
 */
import { performance } from 'node:perf_hooks';
import { isRecord } from './ipc.ts';
import type { Relay } from './postern.ts';

export const PAGE_SIZE = 50;
const REQUESTS = 100;
/** Unmeasured requests first, so a connection is open and the route's code is compiled. */
const WARM_UP = 3;

export type PageLatency = {
  status: string;
  requests: number;
  /** The first request (unmeasured in the percentiles), for a cold figure. */
  firstMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Why a page was not what was asked for, or null when every page was right. */
  problem: string | null;
};

function percentile(sorted: number[], p: number): number {
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

/** What is wrong with a page, or null. */
function checkPage(body: unknown, channelId: string, status: string): string | null {
  const events = isRecord(body) ? body['events'] : undefined;
  if (!Array.isArray(events)) return 'no events list';
  if (events.length !== PAGE_SIZE) return `${events.length} events instead of ${PAGE_SIZE}`;
  let previous = Infinity;
  for (const e of events) {
    if (!isRecord(e)) return 'an event is not an object';
    if (e['channelId'] !== channelId) return `an event of channel ${String(e['channelId'])}`;
    if (e['status'] !== status) return `an event with status ${String(e['status'])}`;
    const at = Date.parse(String(e['receivedAt']));
    if (!(at <= previous)) return 'not newest first';
    previous = at;
  }
  return null;
}

export async function pageLatency(
  relay: Relay,
  channelId: string,
  status: string,
): Promise<PageLatency> {
  const url = `${relay.url}/api/events?channel=${channelId}&status=${status}&limit=${PAGE_SIZE}`;
  const headers = { authorization: `Bearer ${relay.token}` };
  const times: number[] = [];
  let problem: string | null = null;
  for (let i = 0; i < WARM_UP + REQUESTS; i++) {
    const t0 = performance.now();
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(15_000) });
    const text = await res.text();
    times.push(performance.now() - t0);
    if (problem !== null) continue;
    if (res.status !== 200) problem = `GET → ${res.status} ${text.slice(0, 200)}`;
    else problem = checkPage(JSON.parse(text), channelId, status);
  }
  const sorted = times.slice(WARM_UP).sort((a, b) => a - b);
  return {
    status,
    requests: sorted.length,
    firstMs: times[0] ?? 0,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? 0,
    problem,
  };
}
