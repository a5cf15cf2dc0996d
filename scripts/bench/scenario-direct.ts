/**
 * Scenario 1 (and the reference half of scenario 3): the load generator straight at the app,
 * no Postern in between.
 */
import type { Bench } from './context.ts';
import { elapsedS, type Latency } from './load-job.ts';

export type DirectResult = {
  connections: number;
  durationS: number;
  requests: number;
  requestsPerS: number;
  latencyMs: Latency;
  non2xx: number;
  errors: number;
  /** Requests the app counted during the run (requests cut off at the end may differ). */
  appReceived: number;
};

export async function runDirect(b: Bench, connections: number): Promise<DirectResult> {
  await b.load.run(b.job(b.app.url, { amount: Math.max(200, connections * 50), connections }));
  await b.app.reset();
  const r = await b.load.run(b.job(b.app.url, { connections }));
  const app = await b.app.stats();
  return {
    connections,
    durationS: elapsedS(r),
    requests: r.completed,
    requestsPerS: r.completed / elapsedS(r),
    latencyMs: r.latencyMs,
    non2xx: r.non2xx,
    errors: r.errors,
    appReceived: app.requests,
  };
}
