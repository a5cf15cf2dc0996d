/** The charts' geometry (server/dashboard/ui/chart-geometry.ts): scales, ticks and lines. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatLatency,
  linePath,
  linearTicks,
  logTicks,
  niceMax,
  xAt,
  yLinear,
  yLog,
} from '../../server/dashboard/ui/chart-geometry.ts';

const F = { left: 10, top: 0, width: 100, height: 50 };

test('niceMax rounds up to 1, 2 or 5 × 10^k, at least 1', () => {
  assert.deepEqual(
    [0, 1, 3, 7, 10, 11, 26, 499, 5001].map(niceMax),
    [1, 1, 5, 10, 10, 20, 50, 500, 10_000],
  );
});

test('scales: 0 and 1 ms at the bottom, max at the top, beyond it clamped', () => {
  assert.equal(yLinear(F, 10, 0), 50);
  assert.equal(yLinear(F, 10, 10), 0);
  assert.equal(yLinear(F, 10, 5), 25);
  assert.equal(yLinear(F, 10, 20), 0);
  assert.equal(yLog(F, 1_000, 1), 50);
  assert.equal(yLog(F, 1_000, 0), 50);
  assert.equal(yLog(F, 1_000, 1_000), 0);
  assert.ok(Math.abs(yLog(F, 1_000, 10) - 50 * (2 / 3)) < 1e-9);
  assert.equal(xAt(F, 4, 0), 22.5);
  assert.equal(xAt(F, 4, 3), 97.5);
});

test('linePath: moves at the start and after a gap, lines otherwise; empty without values', () => {
  const x = (i: number) => i * 10;
  assert.equal(linePath([1, 2.04, null, 4, 5], x), 'M0 1 L10 2 M30 4 L40 5');
  assert.equal(linePath([null, null], x), '');
});

test('ticks and latency labels', () => {
  assert.deepEqual(linearTicks(1), [0, 1]);
  assert.deepEqual(linearTicks(10), [0, 5, 10]);
  assert.deepEqual(linearTicks(5), [0, 5]);
  assert.deepEqual(logTicks(2_000), [1, 10, 100, 1_000]);
  assert.deepEqual([null, 5, 1_500, 120_000, 3_600_000].map(formatLatency), [
    '—',
    '5 ms',
    '1.5 s',
    '2 min',
    '1 h',
  ]);
});
