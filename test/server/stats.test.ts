/**
 * The statistics' pure parts: latency buckets and percentiles (server/store/minute-stats.ts),
 * the windows `GET /api/stats` answers for and how minutes fold into its points
 * (server/http/api/stats.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { foldSeries, statsWindow } from '../../server/http/api/stats.ts';
import {
  LATENCY_BUCKETS,
  LATENCY_EDGES_MS,
  emptyMinute,
  latencyBucket,
  latencyQuantile,
  minuteOf,
  outcomeDelta,
  receivedDelta,
} from '../../server/store/minute-stats.ts';
import type { EventSummary, MinuteStats } from '../../server/store/types.ts';
import { PosternError } from '../../shared/errors.ts';

const M = 60_000;
const T0 = 1_700_000_040_000; // a minute start
const NOW = T0 + 3 * 3_600_000 + 17 * M + 12_345;

function hist(pairs: [number, number][]): number[] {
  const h = new Array<number>(LATENCY_BUCKETS).fill(0);
  for (const [b, n] of pairs) h[b] = n;
  return h;
}

test('latency buckets: each edge opens its bucket; one above the last edge is the last one', () => {
  assert.equal(latencyBucket(0), 0);
  assert.equal(latencyBucket(0.9), 0);
  assert.equal(latencyBucket(1), 1);
  assert.equal(latencyBucket(99.9), 6);
  assert.equal(latencyBucket(100), 7);
  assert.equal(latencyBucket(3_600_000), LATENCY_BUCKETS - 1);
  assert.equal(latencyBucket(10 * 3_600_000), LATENCY_BUCKETS - 1);
  LATENCY_EDGES_MS.forEach((edge, k) => assert.equal(latencyBucket(edge), k + 1, `edge ${edge}`));
});

test('percentiles: the upper edge of the bucket holding the rank; null when empty', () => {
  assert.equal(latencyQuantile(hist([]), 0.5), null);
  // 90 in [100, 200), 9 in [1 s, 2 s), 1 in [1 h, ∞).
  const h = hist([
    [7, 90],
    [10, 9],
    [LATENCY_BUCKETS - 1, 1],
  ]);
  assert.equal(latencyQuantile(h, 0.5), 200);
  assert.equal(latencyQuantile(h, 0.9), 200);
  assert.equal(latencyQuantile(h, 0.91), 2_000);
  assert.equal(latencyQuantile(h, 0.99), 2_000);
  assert.equal(latencyQuantile(h, 1), 3_600_000);
});

test('deltas: received unless refused; delivered and failed in the minute the attempt ended', () => {
  const e = {
    id: 'evt_1',
    receivedAt: T0 + 59_990,
    status: 'queued',
    replays: 0,
  } as EventSummary;
  assert.equal(minuteOf(T0 + 59_999), T0);
  assert.deepEqual(receivedDelta(e), {
    minute: T0,
    received: 1,
    delivered: 0,
    failed: 0,
    bucket: null,
  });
  assert.equal(receivedDelta({ ...e, status: 'rejected' }), null);
  const attempt = {
    at: T0 + 60_000,
    agentId: 'ag',
    outcome: 'delivered' as const,
    status: 200,
    durationMs: 40,
    error: null,
  };
  const delivered = outcomeDelta(
    e,
    { status: 'delivered', attemptCount: 1, nextAttemptAt: 0, attempt },
    0,
  );
  // Ends at T0 + 60 040: the next minute, 50 ms after receipt.
  assert.deepEqual(delivered, { minute: T0 + M, received: 0, delivered: 1, failed: 0, bucket: 6 });
  assert.equal(
    outcomeDelta(
      { ...e, replays: 1 },
      { status: 'delivered', attemptCount: 1, nextAttemptAt: 0, attempt },
      0,
    )?.bucket,
    null,
    'a replay is not in the latency',
  );
  assert.equal(
    outcomeDelta(e, { status: 'queued', attemptCount: 1, nextAttemptAt: 5, attempt }, 0),
    null,
  );
  assert.deepEqual(
    outcomeDelta(e, { status: 'failed', attemptCount: 1, nextAttemptAt: 0 }, T0 + 5 * M + 1),
    {
      minute: T0 + 5 * M,
      received: 0,
      delivered: 0,
      failed: 1,
      bucket: null,
    },
  );
});

test('windows: hour and day end with the current step; a range gets the smallest step that fits', () => {
  const hour = statsWindow({}, NOW);
  assert.deepEqual(hour, {
    since: minuteOf(NOW) + M - 3_600_000,
    until: minuteOf(NOW) + M,
    stepMs: M,
  });
  assert.deepEqual(statsWindow({ range: 'hour' }, NOW), hour);
  const day = statsWindow({ range: 'day' }, NOW);
  assert.equal(day.stepMs, 15 * M);
  assert.equal(day.until % (15 * M), 0);
  assert.ok(day.until > NOW && day.until - NOW <= 15 * M);
  assert.equal(day.until - day.since, 86_400_000);

  assert.deepEqual(statsWindow({ since: String(T0 + 10), until: String(T0 + 90 * M - 1) }, NOW), {
    since: T0,
    until: T0 + 90 * M,
    stepMs: M,
  });
  const iso = new Date(T0).toISOString();
  assert.equal(statsWindow({ since: iso, until: String(T0 + 241 * M) }, NOW).stepMs, 5 * M);
  assert.equal(
    statsWindow({ since: String(T0), until: String(T0 + 7 * 86_400_000) }, NOW).stepMs,
    60 * M,
  );
  assert.equal(
    statsWindow({ since: String(NOW - 10 * M) }, NOW).until,
    minuteOf(NOW) + M,
    'until: now',
  );

  for (const query of [
    { range: 'week' },
    { range: 'day', since: '1' },
    { until: String(NOW) },
    { since: 'soon' },
    { since: String(NOW), until: String(NOW - 1) },
    { since: '0', until: String(NOW) },
    { since: ['1', '2'] },
  ]) {
    assert.throws(
      () => statsWindow(query, NOW),
      (err: unknown) => err instanceof PosternError && err.code === 'ERR_BAD_REQUEST',
      JSON.stringify(query),
    );
  }
});

test('folding: minutes add up into their points, empty points included, percentiles per point', () => {
  const minutes: MinuteStats[] = [
    { ...emptyMinute(T0), received: 2, delivered: 1, latency: hist([[7, 1]]) },
    { ...emptyMinute(T0 + 14 * M), received: 1, failed: 1 },
    {
      ...emptyMinute(T0 + 15 * M),
      delivered: 3,
      latency: hist([
        [3, 2],
        [12, 1],
      ]),
    },
    // Outside the window: left out.
    { ...emptyMinute(T0 + 45 * M), received: 9 },
  ];
  const { points, totals } = foldSeries(minutes, T0, T0 + 45 * M, 15 * M);
  assert.equal(points.length, 3);
  assert.deepEqual(
    points.map((p) => [p.at, p.received, p.delivered, p.failed, p.latencyMs.p50]),
    [
      [new Date(T0).toISOString(), 3, 1, 1, 200],
      [new Date(T0 + 15 * M).toISOString(), 0, 3, 0, 10],
      [new Date(T0 + 30 * M).toISOString(), 0, 0, 0, null],
    ],
  );
  assert.deepEqual(totals, {
    received: 3,
    delivered: 4,
    failed: 1,
    latencyMs: { p50: 10, p90: 10_000, p99: 10_000 },
  });
});
