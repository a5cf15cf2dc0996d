import { answerStart } from '../../shared/codec.ts';
import type { AgentFrame } from '../../shared/protocol.ts';
import type { Attempt, EventSummary, EventUpdate } from '../store/types.ts';

type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

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

/** When no agent has a route for a channel, look again after this long (no attempt used). */
export const NO_ROUTE_RETRY_MS = 30_000;

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

/**
 * What one attempt makes of an event: delivered, filtered (done), failed for good (the dead
 * letter), or queued for its next attempt. A missing route consumes no attempt; the routes a
 * fan-out reached are added to those delivered before, so a retry skips them. The attempt keeps
 * the app's answer (bounded by the agent, checked by the codec) and the event's replay count.
 */
export function afterAttempt(
  event: EventSummary,
  ack: AckFrame,
  agentId: string,
  delaysMs: readonly number[],
  now: number,
  random: () => number = Math.random,
): EventUpdate {
  const attempt: Attempt = {
    at: now,
    agentId,
    outcome: ack.outcome,
    status: ack.status ?? null,
    durationMs: ack.durationMs,
    error: ack.error ?? null,
  };
  if (ack.response) {
    const start = answerStart(ack);
    attempt.response = {
      headers: ack.response.headers,
      body: Buffer.from(start.buffer, start.byteOffset, start.byteLength).toString('base64'),
      bodyBytes: ack.response.bodyBytes,
      truncated: ack.response.truncated,
    };
  }
  if (event.replays > 0) attempt.replay = event.replays;
  let update: EventUpdate;
  if (ack.outcome === 'delivered') {
    update = {
      status: 'delivered',
      attemptCount: event.attemptCount + 1,
      nextAttemptAt: 0,
      attempt,
    };
  } else if (ack.outcome === 'filtered') {
    update = { status: 'filtered', attemptCount: event.attemptCount, nextAttemptAt: 0, attempt };
  } else {
    const failures = ack.outcome === 'failed' ? event.attemptCount + 1 : event.attemptCount;
    const decision: RetryDecision =
      ack.outcome === 'no_route'
        ? { kind: 'retry', delayMs: NO_ROUTE_RETRY_MS }
        : nextRetry(delaysMs, failures, ack.retryAfterMs, random);
    update =
      decision.kind === 'give-up'
        ? { status: 'failed', attemptCount: failures, nextAttemptAt: 0, attempt }
        : {
            status: 'queued',
            attemptCount: failures,
            nextAttemptAt: now + decision.delayMs,
            attempt,
          };
  }
  if (ack.routes && ack.routes.length > 0) {
    update.deliveredRoutes = [...new Set([...event.deliveredRoutes, ...ack.routes])];
  }
  return update;
}
