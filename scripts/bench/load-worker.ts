/**
 * The load generator, run as its own process by scripts/bench.ts so that autocannon never
 * shares an event loop with the relay, the agent or the app. Runs one job at a time and
 * answers with counts, exact latency percentiles (from autocannon's per-response times, not
 * its whole-millisecond histogram) and the event ids the relay acknowledged.
 */
import autocannon from 'autocannon';
import { decodeLoadJob, type LoadJob, type LoadResult } from './load-job.ts';
import { serveIpc, type Json } from './ipc.ts';

/** A relay's 202 body is `{"id":"evt_…"}`; a sync answer carries the id in a header. */
const EVENT_ID = /"id"\s*:\s*"(evt_[^"]+)"/;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

async function run(job: LoadJob): Promise<LoadResult> {
  const ids: string[] = [];
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let lastResponseAt = 0;
  const startedAt = Date.now();
  const instance = autocannon({
    url: job.url,
    connections: job.connections,
    ...(job.amount > 0 ? { amount: job.amount } : { duration: job.durationS }),
    method: 'POST',
    body: job.body,
    headers: job.headers,
    timeout: job.timeoutS,
    // Check for the end every 100 ms rather than every second, so a run of `amount` requests
    // does not idle for up to a second after its last response.
    sampleInt: 100,
    requests: [
      job.collectIds
        ? {
            onResponse: (status, body, _context, headers) => {
              if (status < 200 || status > 299) return;
              const header = headers['x-postern-event-id'];
              const id = typeof header === 'string' ? header : EVENT_ID.exec(body)?.[1];
              if (id) ids.push(id);
            },
          }
        : {},
    ],
  });
  instance.on('response', (_client, _status, _bytes, responseTime) => {
    lastResponseAt = Date.now();
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = responseTime;
  });
  // Bounded in time as well as in count: a stuck run is stopped, and says so.
  let truncated = false;
  const watchdog = setTimeout(() => {
    truncated = true;
    instance.stop();
  }, job.maxSeconds * 1000);
  const result = await instance;
  clearTimeout(watchdog);
  const sorted = latencies.slice(0, count).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const statusCounts: Record<string, number> = {};
  for (const [code, { count: n }] of Object.entries(result.statusCodeStats)) statusCounts[code] = n;
  return {
    completed: count,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    statusCounts,
    errors: result.errors,
    timeouts: result.timeouts,
    startedAt,
    lastResponseAt: lastResponseAt || Date.now(),
    latencyMs: {
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      mean: count ? sum / count : 0,
      max: percentile(sorted, 100),
    },
    ids,
    truncated,
  };
}

const notify = serveIpc(async (msg) => {
  if (msg['type'] !== 'run') throw new Error(`unknown request ${String(msg['type'])}`);
  const result: Json = { ...(await run(decodeLoadJob(msg['job']))) };
  return result;
});
notify({ type: 'ready' });
