/**
 * The embedded store's rule-8 state in memory (server/store/shared-memory.ts): token buckets
 * as the contract suite checks them on every backend, plus the bound on how many are kept.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharedMemory } from '../../server/store/shared-memory.ts';

const T = 1_000_000;

test('a new key gets its whole burst, then waits; the wait shrinks as tokens refill', () => {
  const m = new SharedMemory(() => undefined);
  const limit = { perSecond: 2, burst: 1 };
  assert.equal(m.takeToken('a', limit, T), 0);
  assert.equal(m.takeToken('a', limit, T), 500);
  assert.equal(m.takeToken('a', limit, T + 250), 250);
  assert.equal(m.takeToken('a', limit, T + 500), 0);
  assert.equal(m.takeToken('a', limit, T + 500), 500);
});

test('a refused take costs nothing; refill is capped at burst', () => {
  const m = new SharedMemory(() => undefined);
  const limit = { perSecond: 10, burst: 2 };
  m.takeToken('a', limit, T);
  m.takeToken('a', limit, T);
  for (let i = 0; i < 10; i++) assert.equal(m.takeToken('a', limit, T), 100);
  const later = T + 3_600_000;
  assert.deepEqual(
    [
      m.takeToken('a', limit, later),
      m.takeToken('a', limit, later),
      m.takeToken('a', limit, later),
    ],
    [0, 0, 100],
  );
});

test('at most maxBuckets buckets: the least recently used key is forgotten', () => {
  const m = new SharedMemory(() => undefined, 2);
  const limit = { perSecond: 1, burst: 1 };
  assert.equal(m.takeToken('a', limit, T), 0);
  assert.equal(m.takeToken('b', limit, T), 0);
  // Touch a: b is now the least recently used.
  assert.equal(m.takeToken('a', limit, T), 1_000);
  // c evicts b, not a.
  assert.equal(m.takeToken('c', limit, T), 0);
  assert.equal(m.takeToken('a', limit, T), 1_000);
  // b was forgotten, so it starts again with a full burst (and evicts c).
  assert.equal(m.takeToken('b', limit, T), 0);
  assert.equal(m.takeToken('a', limit, T), 1_000);
  assert.equal(m.takeToken('c', limit, T), 0);
});
