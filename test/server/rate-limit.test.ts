import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RateLimiter } from '../../server/rate-limit.ts';

function clock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

test('a new key gets its whole burst, then must wait', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 1, burst: 3, now: c.now });
  assert.deepEqual(
    [limiter.take('a'), limiter.take('a'), limiter.take('a'), limiter.take('a')],
    [0, 0, 0, 1_000],
  );
});

test('tokens refill at perSecond and the wait shrinks accordingly', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 2, burst: 1, now: c.now });
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('a'), 500);
  c.advance(250);
  assert.equal(limiter.take('a'), 250);
  c.advance(250);
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('a'), 500);
});

test('a refused take costs nothing', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 1, burst: 1, now: c.now });
  assert.equal(limiter.take('a'), 0);
  for (let i = 0; i < 10; i++) assert.equal(limiter.take('a'), 1_000);
  c.advance(1_000);
  assert.equal(limiter.take('a'), 0);
});

test('refill is capped at burst', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 10, burst: 2, now: c.now });
  limiter.take('a');
  limiter.take('a');
  c.advance(3_600_000);
  assert.deepEqual([limiter.take('a'), limiter.take('a'), limiter.take('a')], [0, 0, 100]);
});

test('keys are independent', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 1, burst: 1, now: c.now });
  assert.equal(limiter.take('203.0.113.1'), 0);
  assert.equal(limiter.take('203.0.113.1'), 1_000);
  assert.equal(limiter.take('203.0.113.2'), 0);
  assert.equal(limiter.take('203.0.113.2'), 1_000);
});

test('at most maxKeys buckets: the least recently used key is forgotten', () => {
  const c = clock();
  const limiter = new RateLimiter({ perSecond: 1, burst: 1, maxKeys: 2, now: c.now });
  assert.equal(limiter.take('a'), 0);
  assert.equal(limiter.take('b'), 0);
  // Touch a: b is now the least recently used.
  assert.equal(limiter.take('a'), 1_000);
  // c evicts b, not a.
  assert.equal(limiter.take('c'), 0);
  assert.equal(limiter.take('a'), 1_000);
  // b was forgotten, so it starts again with a full burst (and evicts c).
  assert.equal(limiter.take('b'), 0);
  assert.equal(limiter.take('a'), 1_000);
  assert.equal(limiter.take('c'), 0);
});
