/**
 * Scenario 3: one connection to a sync channel, where the relay holds each request open for
 * the app's own answer through the tunnel; beside the same load straight at the app.
 */
import type { Bench } from './context.ts';
import { awaitDelivery, warmUp } from './delivery.ts';
import { elapsedS, type Latency } from './load-job.ts';
import { runDirect, type DirectResult } from './scenario-direct.ts';

export type SyncResult = {
  direct: DirectResult;
  relay: {
    requests: number;
    requestsPerS: number;
    latencyMs: Latency;
    /** Answered with the app's own 200 through the tunnel. */
    answeredByApp: number;
    /** Answered 202 by the relay (the sync deadline passed, or no agent): queued instead. */
    fellBackTo202: number;
    non2xx: number;
    errors: number;
    /** Accepted events that never reached the app. */
    lost: number;
  };
};

export async function runSync(b: Bench, ingress: string): Promise<SyncResult> {
  const direct = await runDirect(b, 1);
  await warmUp(b, ingress, 200, 1);
  const r = await b.load.run(b.job(ingress, { connections: 1, collectIds: true }));
  const done = await awaitDelivery(b, r.ids, 'sync');
  await b.app.reset();
  return {
    direct,
    relay: {
      requests: r.completed,
      requestsPerS: r.completed / elapsedS(r),
      latencyMs: r.latencyMs,
      answeredByApp: r.statusCounts['200'] ?? 0,
      fellBackTo202: r.statusCounts['202'] ?? 0,
      non2xx: r.non2xx,
      errors: r.errors,
      lost: done.missing,
    },
  };
}
