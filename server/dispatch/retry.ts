/**
 * The relay's retry policy: after each failed attempt, wait the channel's next delay (with
 * ±20 % jitter so that retries of a burst spread out), or the app's Retry-After when it gave
 * one; after the last delay the event is `failed` (the dead letter).
 */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3_600_000,
  5 * 3_600_000,
  10 * 3_600_000,
  14 * 3_600_000,
  20 * 3_600_000,
  24 * 3_600_000,
];

/** Longest Retry-After honoured; beyond it the schedule's own delay is used. */
const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

export type RetryDecision = { kind: 'retry'; delayMs: number } | { kind: 'give-up' };

/**
 * `failures` counts failed attempts so far, including the one just made.
 * `random` is uniform in [0, 1), injectable for tests.
 */
export function nextRetry(
  delaysMs: readonly number[],
  failures: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): RetryDecision {
  const base = delaysMs[failures - 1];
  if (base === undefined) return { kind: 'give-up' };
  if (retryAfterMs !== undefined && retryAfterMs <= MAX_RETRY_AFTER_MS) {
    return { kind: 'retry', delayMs: retryAfterMs };
  }
  return { kind: 'retry', delayMs: Math.round(base * (0.8 + 0.4 * random())) };
}
