import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_RETRY_DELAYS_MS,
  nextRetry,
  afterAttempt,
  NO_ROUTE_RETRY_MS,
} from '../../server/dispatch/retry.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

test('the default schedule is the contract: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h', () => {
  assert.deepEqual(
    [...DEFAULT_RETRY_DELAYS_MS],
    [
      5 * SECOND,
      5 * MINUTE,
      30 * MINUTE,
      2 * HOUR,
      5 * HOUR,
      10 * HOUR,
      14 * HOUR,
      20 * HOUR,
      24 * HOUR,
    ],
  );
});

test('failure n waits the n-th delay (random 0.5 means no jitter)', () => {
  const delays = [100, 2_000, 30_000];
  assert.deepEqual(
    nextRetry(delays, 1, undefined, () => 0.5),
    { kind: 'retry', delayMs: 100 },
  );
  assert.deepEqual(
    nextRetry(delays, 2, undefined, () => 0.5),
    { kind: 'retry', delayMs: 2_000 },
  );
  assert.deepEqual(
    nextRetry(delays, 3, undefined, () => 0.5),
    { kind: 'retry', delayMs: 30_000 },
  );
});

test('the default schedule is walked in order, then the event gives up', () => {
  const got: number[] = [];
  for (let failures = 1; failures <= DEFAULT_RETRY_DELAYS_MS.length; failures++) {
    const decision = nextRetry(DEFAULT_RETRY_DELAYS_MS, failures, undefined, () => 0.5);
    assert.equal(decision.kind, 'retry');
    if (decision.kind === 'retry') got.push(decision.delayMs);
  }
  assert.deepEqual(got, [...DEFAULT_RETRY_DELAYS_MS]);
  assert.deepEqual(
    nextRetry(DEFAULT_RETRY_DELAYS_MS, 10, undefined, () => 0.5),
    {
      kind: 'give-up',
    },
  );
});

test('after the last delay the event gives up, whatever the Retry-After', () => {
  assert.deepEqual(
    nextRetry([100], 2, undefined, () => 0.5),
    { kind: 'give-up' },
  );
  assert.deepEqual(
    nextRetry([100], 2, 1_000, () => 0.5),
    { kind: 'give-up' },
  );
  assert.deepEqual(
    nextRetry([], 1, undefined, () => 0.5),
    { kind: 'give-up' },
  );
  assert.deepEqual(
    nextRetry([], 1, 5, () => 0.5),
    { kind: 'give-up' },
  );
});

test('jitter spans 0.8 to 1.2 of the delay', () => {
  assert.deepEqual(
    nextRetry([10_000], 1, undefined, () => 0),
    { kind: 'retry', delayMs: 8_000 },
  );
  assert.deepEqual(
    nextRetry([10_000], 1, undefined, () => 0.25),
    {
      kind: 'retry',
      delayMs: 9_000,
    },
  );
  assert.deepEqual(
    nextRetry([10_000], 1, undefined, () => 0.75),
    {
      kind: 'retry',
      delayMs: 11_000,
    },
  );
  // 10,000 × (0.8 + 0.4 × 0.9999) = 11,999.6, rounded to whole milliseconds.
  assert.deepEqual(
    nextRetry([10_000], 1, undefined, () => 0.9999),
    {
      kind: 'retry',
      delayMs: 12_000,
    },
  );
});

test('with the real random source every delay stays within [0.8, 1.2] of the base', () => {
  const base = 300_000;
  let low = Infinity;
  let high = -Infinity;
  for (let i = 0; i < 5_000; i++) {
    const decision = nextRetry([base], 1, undefined);
    assert.equal(decision.kind, 'retry');
    if (decision.kind !== 'retry') continue;
    assert.ok(Number.isInteger(decision.delayMs), `${decision.delayMs} is not an integer`);
    low = Math.min(low, decision.delayMs);
    high = Math.max(high, decision.delayMs);
  }
  assert.ok(low >= 0.8 * base, `lowest delay ${low} is below 0.8 × ${base}`);
  assert.ok(high <= 1.2 * base, `highest delay ${high} is above 1.2 × ${base}`);
  // 5,000 draws spread over the whole range, not stuck at the base.
  assert.ok(low < 0.82 * base, `lowest delay ${low} never got near 0.8 × ${base}`);
  assert.ok(high > 1.18 * base, `highest delay ${high} never got near 1.2 × ${base}`);
});

test('Retry-After replaces the scheduled delay, without jitter', () => {
  let calls = 0;
  const random = () => {
    calls++;
    return 0;
  };
  assert.deepEqual(nextRetry([5_000, 300_000], 1, 7_000, random), {
    kind: 'retry',
    delayMs: 7_000,
  });
  assert.deepEqual(nextRetry([5_000, 300_000], 2, 0, random), { kind: 'retry', delayMs: 0 });
  assert.equal(calls, 0);
});

test('Retry-After up to 24 h is honoured; beyond that the schedule is used', () => {
  assert.deepEqual(
    nextRetry([5_000], 1, 24 * HOUR, () => 0.5),
    {
      kind: 'retry',
      delayMs: 24 * HOUR,
    },
  );
  assert.deepEqual(
    nextRetry([5_000], 1, 24 * HOUR + 1, () => 0.5),
    {
      kind: 'retry',
      delayMs: 5_000,
    },
  );
});

test('afterAttempt: what each outcome makes of an event', () => {
  const event = {
    id: 'evt_1',
    channelId: 'ch_1',
    status: 'delivering' as const,
    receivedAt: 0,
    method: 'POST',
    path: '',
    query: '',
    size: 1,
    attemptCount: 1,
    attempts: [],
    nextAttemptAt: 0,
    reason: null,
    orderKey: '',
    deliveredRoutes: ['a'],
    replays: 0,
  };
  const ack = (outcome: 'delivered' | 'failed' | 'no_route' | 'filtered', extra = {}) => ({
    type: 'ack' as const,
    eventId: 'evt_1',
    outcome,
    durationMs: 3,
    ...extra,
  });
  const half = () => 0.5;
  const delivered = afterAttempt(
    event,
    ack('delivered', { status: 200, routes: ['b', 'a'] }),
    'ag_1',
    [100],
    1_000,
    half,
  );
  assert.equal(delivered.status, 'delivered');
  assert.equal(delivered.attemptCount, 2);
  assert.deepEqual(delivered.deliveredRoutes, ['a', 'b'], 'routes accumulate, once each');
  assert.deepEqual(delivered.attempt, {
    at: 1_000,
    agentId: 'ag_1',
    outcome: 'delivered',
    status: 200,
    durationMs: 3,
    error: null,
  });
  const retry = afterAttempt(
    event,
    ack('failed', { status: 500, error: 'app answered 500' }),
    'ag_1',
    [100, 200],
    1_000,
    half,
  );
  assert.deepEqual([retry.status, retry.attemptCount, retry.nextAttemptAt], ['queued', 2, 1_200]);
  const dead = afterAttempt(event, ack('failed'), 'ag_1', [100], 1_000, half);
  assert.deepEqual([dead.status, dead.attemptCount], ['failed', 2]);
  const noRoute = afterAttempt(event, ack('no_route'), 'ag_1', [], 1_000, half);
  assert.deepEqual(
    [noRoute.status, noRoute.attemptCount, noRoute.nextAttemptAt],
    ['queued', 1, 1_000 + NO_ROUTE_RETRY_MS],
  );
  const filtered = afterAttempt(event, ack('filtered'), 'ag_1', [100], 1_000, half);
  assert.deepEqual(
    [filtered.status, filtered.attemptCount, filtered.deliveredRoutes],
    ['filtered', 1, undefined],
  );
});

test('afterAttempt keeps the app’s answer (body start in base64) and the replay count', () => {
  const event = {
    id: 'evt_1',
    channelId: 'ch_1',
    status: 'delivering' as const,
    receivedAt: 0,
    method: 'POST',
    path: '',
    query: '',
    size: 1,
    attemptCount: 0,
    attempts: [],
    nextAttemptAt: 0,
    reason: null,
    orderKey: '',
    deliveredRoutes: [],
    replays: 2,
  };
  const headers: [string, string][] = [['content-type', 'application/json']];
  const failed = afterAttempt(
    event,
    {
      type: 'ack',
      eventId: 'evt_1',
      outcome: 'failed',
      status: 500,
      error: 'app answered 500',
      durationMs: 3,
      response: { headers, bodyBytes: 3000, truncated: true },
      body: Buffer.alloc(2048, 0x61),
    },
    'ag_1',
    [100],
    1_000,
    () => 0.5,
  );
  assert.deepEqual(failed.attempt, {
    at: 1_000,
    agentId: 'ag_1',
    outcome: 'failed',
    status: 500,
    durationMs: 3,
    error: 'app answered 500',
    response: {
      headers,
      body: Buffer.alloc(2048, 0x61).toString('base64'),
      bodyBytes: 3000,
      truncated: true,
    },
    replay: 2,
  });
  // A sync ack carries the whole body: the attempt keeps its first 2048 bytes.
  const sync = afterAttempt(
    { ...event, replays: 0 },
    {
      type: 'ack',
      eventId: 'evt_1',
      outcome: 'delivered',
      status: 200,
      durationMs: 3,
      responseHeaders: headers,
      response: { headers, bodyBytes: 3000, truncated: true },
      body: Buffer.concat([Buffer.alloc(2048, 0x62), Buffer.alloc(952, 0x63)]),
    },
    'ag_1',
    [100],
    1_000,
  );
  assert.equal(sync.attempt?.response?.body, Buffer.alloc(2048, 0x62).toString('base64'));
  assert.equal('replay' in (sync.attempt ?? {}), false, 'the original delivery has no replay');
  // No answer (the app never answered): no response field at all.
  const refused = afterAttempt(
    event,
    { type: 'ack', eventId: 'evt_1', outcome: 'failed', durationMs: 1, error: 'refused' },
    'ag_1',
    [100],
    1_000,
  );
  assert.equal('response' in (refused.attempt ?? {}), false);
});
