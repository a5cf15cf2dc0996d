/**
 * One run of the load generator: what to send (a job) and what came back (a result), shared by
 * the benchmark and scripts/bench/load-worker.ts, with the decoders for both directions.
 */
import { isRecord, num, record, str, strings } from './ipc.ts';

export type LoadJob = {
  url: string;
  connections: number;
  /** A number of requests, or 0 to run for `durationS`. */
  amount: number;
  durationS: number;
  body: string;
  headers: Record<string, string>;
  /** Keep the event ids of the 2xx answers (from the body `{"id"}` or `x-postern-event-id`). */
  collectIds: boolean;
  /** Per-request timeout. */
  timeoutS: number;
  /** The run is stopped after this long whatever `amount` says. */
  maxSeconds: number;
};

export type Latency = { p50: number; p90: number; p99: number; mean: number; max: number };

export type LoadResult = {
  /** Responses received (any status). */
  completed: number;
  ok2xx: number;
  non2xx: number;
  statusCounts: Record<string, number>;
  errors: number;
  timeouts: number;
  startedAt: number;
  lastResponseAt: number;
  latencyMs: Latency;
  ids: string[];
  /** Stopped by `maxSeconds` before `amount` was reached. */
  truncated: boolean;
};

function headers(r: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record(r, 'headers'))) {
    if (typeof v !== 'string') throw new TypeError(`headers.${k}: expected a string`);
    out[k] = v;
  }
  return out;
}

export function decodeLoadJob(v: unknown): LoadJob {
  if (!isRecord(v)) throw new TypeError('job: expected an object');
  return {
    url: str(v, 'url'),
    connections: num(v, 'connections'),
    amount: num(v, 'amount'),
    durationS: num(v, 'durationS'),
    body: str(v, 'body'),
    headers: headers(v),
    collectIds: v['collectIds'] === true,
    timeoutS: num(v, 'timeoutS'),
    maxSeconds: num(v, 'maxSeconds'),
  };
}

export function decodeLoadResult(v: unknown): LoadResult {
  if (!isRecord(v)) throw new TypeError('result: expected an object');
  const lat = record(v, 'latencyMs');
  const statusCounts: Record<string, number> = {};
  for (const code of Object.keys(record(v, 'statusCounts'))) {
    statusCounts[code] = num(record(v, 'statusCounts'), code);
  }
  return {
    completed: num(v, 'completed'),
    ok2xx: num(v, 'ok2xx'),
    non2xx: num(v, 'non2xx'),
    statusCounts,
    errors: num(v, 'errors'),
    timeouts: num(v, 'timeouts'),
    startedAt: num(v, 'startedAt'),
    lastResponseAt: num(v, 'lastResponseAt'),
    latencyMs: {
      p50: num(lat, 'p50'),
      p90: num(lat, 'p90'),
      p99: num(lat, 'p99'),
      mean: num(lat, 'mean'),
      max: num(lat, 'max'),
    },
    ids: strings(v, 'ids'),
    truncated: v['truncated'] === true,
  };
}

/** Seconds from the start of a run to its last response. */
export function elapsedS(r: LoadResult): number {
  return Math.max(0.001, (r.lastResponseAt - r.startedAt) / 1000);
}

/** A JSON object of exactly `bytes` bytes (at least the 40 or so its fields take). */
export function jsonBody(bytes: number): string {
  const head = { event: 'bench.webhook', sentBy: 'postern-bench', pad: '' };
  const room = Math.max(0, bytes - JSON.stringify(head).length);
  return JSON.stringify({ ...head, pad: 'x'.repeat(room) });
}
