/**
 * Waiting for accepted webhooks to reach the app, and warming a path up before measuring it.
 */
import type { AppStats } from './app-client.ts';
import type { Bench } from './context.ts';

/** Longest wait without a single new delivery before giving up (the relay's first retry is ~5 s). */
const STALL_MS = 30_000;

/** Tells the app which event ids to expect and waits until all arrived (or the bounds hit). */
export async function awaitDelivery(b: Bench, ids: string[], what: string): Promise<AppStats> {
  await b.app.expect(ids);
  const stats = await b.app.waitDelivered({
    stallMs: STALL_MS,
    deadline: b.deadline - 10_000,
    onProgress: (s) =>
      b.progress(`${what}: ${s.expected - s.missing} of ${s.expected} delivered so far`),
  });
  if (stats.missing > 0) {
    b.progress(`${what}: gave up with ${stats.missing} of ${stats.expected} still undelivered`);
  }
  return stats;
}

/**
 * Sends `amount` webhooks and waits for them, so that connections, JIT and caches are warm
 * before a measurement; then clears the app's counters.
 */
export async function warmUp(b: Bench, url: string, amount: number, connections: number) {
  const r = await b.load.run(b.job(url, { amount, connections, collectIds: true }));
  const stats = await awaitDelivery(b, r.ids, 'warm-up');
  if (r.ok2xx !== amount || stats.missing > 0) {
    throw new Error(
      `warm-up: ${r.ok2xx} of ${amount} accepted (${JSON.stringify(r.statusCounts)}, ` +
        `${r.errors} errors), ${stats.missing} not delivered`,
    );
  }
  await b.app.reset();
}
