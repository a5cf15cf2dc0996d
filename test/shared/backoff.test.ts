import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fullJitterBackoff } from '../../shared/backoff.ts';

test('the ceiling doubles with each attempt: random 0.5 gives half of base · 2^attempt', () => {
  const got = [0, 1, 2, 3, 4].map((attempt) =>
    fullJitterBackoff(attempt, { baseMs: 100, capMs: 60_000, random: () => 0.5 }),
  );
  assert.deepEqual(got, [50, 100, 200, 400, 800]);
});

test('the ceiling is capped', () => {
  const opts = { baseMs: 100, capMs: 30_000, random: () => 0.5 };
  assert.equal(fullJitterBackoff(8, opts), 12_800);
  assert.equal(fullJitterBackoff(9, opts), 15_000);
  assert.equal(fullJitterBackoff(20, opts), 15_000);
  // Huge attempt counts must not overflow to Infinity or NaN.
  assert.equal(fullJitterBackoff(10_000, opts), 15_000);
  assert.equal(fullJitterBackoff(Number.MAX_SAFE_INTEGER, opts), 15_000);
});

test('full jitter: the wait is drawn from [0, ceiling)', () => {
  const opts = (r: number) => ({ baseMs: 1_000, capMs: 10_000, random: () => r });
  assert.equal(fullJitterBackoff(2, opts(0)), 0);
  assert.equal(fullJitterBackoff(2, opts(0.25)), 1_000);
  assert.equal(fullJitterBackoff(2, opts(0.999_999)), 3_999);
  assert.equal(fullJitterBackoff(5, opts(0.999_999)), 9_999);
});

test('with the real random source every wait is a whole number in [0, ceiling)', () => {
  const seen = new Set<number>();
  for (let i = 0; i < 2_000; i++) {
    const wait = fullJitterBackoff(3, { baseMs: 100, capMs: 10_000 });
    assert.ok(Number.isInteger(wait) && wait >= 0 && wait < 800, `wait ${wait} out of [0, 800)`);
    seen.add(wait);
  }
  // Spread out, not a constant.
  assert.ok(seen.size > 100, `only ${seen.size} distinct waits in 2,000 draws`);
});
