import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DedupIndex, MAX_DEDUP_AGE_MS, MAX_DEDUP_KEYS } from '../../server/store/dedup-index.ts';

const T = 1_700_000_000_000;

test('a key is found per channel, only when received at or after `since`', () => {
  const index = new DedupIndex();
  index.add('ch_a', 'k1', 'evt_1', T);
  assert.equal(index.find('ch_a', 'k1', T), 'evt_1');
  assert.equal(index.find('ch_a', 'k1', T - 1), 'evt_1');
  assert.equal(index.find('ch_a', 'k1', T + 1), undefined, 'older than the window asked for');
  assert.equal(index.find('ch_b', 'k1', T), undefined, 'another channel');
  assert.equal(index.find('ch_a', 'k2', T), undefined, 'another key');
});

test('a key seen again later points at the newer event; an older copy changes nothing', () => {
  const index = new DedupIndex();
  index.add('ch_a', 'k', 'evt_1', T);
  index.add('ch_a', 'k', 'evt_2', T + 2 * 86_400_000);
  assert.equal(index.find('ch_a', 'k', T + 86_400_000), 'evt_2');
  // The journal read back with compaction's copies: an older record after a newer one.
  index.add('ch_a', 'k', 'evt_1', T);
  assert.equal(index.find('ch_a', 'k', 0), 'evt_2');
  assert.equal(index.size, 1);
});

test('bounded by count: past the cap the oldest keys go first', () => {
  assert.equal(MAX_DEDUP_KEYS, 1_000_000);
  const index = new DedupIndex(3);
  for (let i = 1; i <= 5; i++) index.add('ch_a', `k${i}`, `evt_${i}`, T + i);
  assert.equal(index.size, 3);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((i) => index.find('ch_a', `k${i}`, 0) ?? null),
    [null, null, 'evt_3', 'evt_4', 'evt_5'],
  );
});

test('bounded by age: keys older than MAX_DEDUP_AGE_MS behind the newest are forgotten', () => {
  const index = new DedupIndex();
  index.add('ch_a', 'old', 'evt_1', T);
  index.add('ch_a', 'mid', 'evt_2', T + 1_000);
  index.add('ch_b', 'new', 'evt_3', T + MAX_DEDUP_AGE_MS + 1);
  assert.equal(index.size, 2, 'only the one past the age went');
  assert.equal(index.find('ch_a', 'old', 0), undefined);
  assert.equal(index.find('ch_a', 'mid', 0), 'evt_2');
  index.add('ch_b', 'newer', 'evt_4', T + MAX_DEDUP_AGE_MS + 1_001);
  assert.equal(index.find('ch_a', 'mid', 0), undefined);
  assert.equal(index.size, 2);
});
