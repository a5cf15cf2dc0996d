/**
 * An event's delivery state as pure functions: the summary a stored payload starts with, and
 * what an update makes of it. The store applies them when it writes, and the conversion of an
 * older journal applies them when it replays one.
 */
import type { EventPayload, EventSummary, EventUpdate } from './types.ts';

/** Attempts kept per event; older ones are dropped from the log (the count is kept). */
export const MAX_ATTEMPTS_KEPT = 20;

/** The state of an event as ingress stored it. */
export function initialSummary(p: EventPayload): EventSummary {
  return {
    id: p.id,
    channelId: p.channelId,
    status: p.rejected ? 'rejected' : 'queued',
    receivedAt: p.receivedAt,
    method: p.method,
    path: p.path,
    query: p.query,
    size: p.rejected ? p.rejected.size : p.body.length,
    attemptCount: 0,
    attempts: [],
    nextAttemptAt: 0,
    reason: p.rejected?.reason ?? null,
    orderKey: p.orderKey ?? '',
    deliveredRoutes: [],
    replays: 0,
  };
}

/** The state after `update`; `summary` is left unchanged. */
export function applyUpdate(summary: EventSummary, update: EventUpdate): EventSummary {
  const next: EventSummary = {
    ...summary,
    status: update.status,
    attemptCount: update.attemptCount,
    nextAttemptAt: update.nextAttemptAt,
  };
  if (update.attempts) next.attempts = update.attempts.slice(-MAX_ATTEMPTS_KEPT);
  if (update.deliveredRoutes) next.deliveredRoutes = update.deliveredRoutes;
  if (update.replays !== undefined) {
    next.replays = update.replays;
    // A replay starts the fan-out again: every route gets it.
    if (!update.deliveredRoutes) next.deliveredRoutes = [];
  }
  if (update.attempt) next.attempts = [...next.attempts, update.attempt].slice(-MAX_ATTEMPTS_KEPT);
  return next;
}
