/**
 * The few relay metrics (Prometheus text on /metrics) that explain a result: how long a
 * commit to disk takes, how many delivery attempts did not succeed, and how many events went
 * to the agent as soon as stored (claimed in their append).
 */
import type { Relay } from './postern.ts';

export type RelayMetrics = {
  commitSecondsSum: number;
  commitCount: number;
  /** Delivery attempts reported by agents, by outcome (`delivered`, `failed`, …). */
  attempts: Record<string, number>;
  handedOff: number;
};

const SAMPLE = /^([a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$/;

export async function scrapeMetrics(relay: Relay): Promise<RelayMetrics> {
  const res = await fetch(`${relay.url}/metrics`, {
    headers: { authorization: `Bearer ${relay.token}` },
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics → ${res.status} ${text}`);
  const out: RelayMetrics = { commitSecondsSum: 0, commitCount: 0, attempts: {}, handedOff: 0 };
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const [, name, labels = '', raw] = m;
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    if (name === 'postern_store_commit_seconds_sum') out.commitSecondsSum = value;
    else if (name === 'postern_store_commit_seconds_count') out.commitCount = value;
    else if (name === 'postern_events_handed_off_total') out.handedOff = value;
    else if (name === 'postern_delivery_attempts_total') {
      const outcome = /outcome="([^"]*)"/.exec(labels)?.[1] ?? '';
      out.attempts[outcome] = value;
    }
  }
  return out;
}

/** What happened between two scrapes: mean commit time, attempts by outcome, hand-offs. */
export function metricsDelta(before: RelayMetrics, after: RelayMetrics) {
  const commits = after.commitCount - before.commitCount;
  const attempts: Record<string, number> = {};
  for (const [outcome, n] of Object.entries(after.attempts)) {
    const d = n - (before.attempts[outcome] ?? 0);
    if (d !== 0) attempts[outcome] = d;
  }
  return {
    meanCommitMs:
      commits > 0 ? ((after.commitSecondsSum - before.commitSecondsSum) / commits) * 1000 : null,
    attempts,
    handedOff: after.handedOff - before.handedOff,
  };
}
