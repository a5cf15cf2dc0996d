import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplayGuard, type Claim } from '../../server/http/replay-guard.ts';

const T = 1_700_000_000_000;
const KEY = { key: 'k'.repeat(43), windowMs: 60_000 };

/** A store of dedup keys, as the embedded store holds them, that counts its look-ups. */
function fakeStore() {
  const seen = new Map<string, { id: string; at: number }>();
  const index = {
    add: (channelId: string, key: string, id: string, at: number) =>
      void seen.set(`${channelId} ${key}`, { id, at }),
    find: (channelId: string, key: string, since: number) => {
      const s = seen.get(`${channelId} ${key}`);
      return s && s.at >= since ? s.id : undefined;
    },
  };
  let lookups = 0;
  return {
    index,
    lookups: () => lookups,
    findByDedupKey(channelId: string, key: string, since: number) {
      lookups++;
      return Promise.resolve(index.find(channelId, key, since));
    },
  };
}

function release(claim: Claim, id: string | undefined): void {
  assert.equal(claim.duplicateOf, undefined, 'the claim holds the key');
  if (claim.duplicateOf === undefined) claim.release(id);
}

test('a key already stored within the window is a duplicate of its event', async () => {
  const store = fakeStore();
  store.index.add('ch_a', KEY.key, 'evt_first', T);
  const guard = new ReplayGuard(store, () => T + 59_999);
  assert.deepEqual(await guard.claim('ch_a', KEY), { duplicateOf: 'evt_first' });
  assert.equal(guard.pending, 0);
  // Past the window, or on another channel: a new request.
  const later = new ReplayGuard(store, () => T + 60_001);
  const claim = await later.claim('ch_a', KEY);
  release(claim, 'evt_second');
  const other = await guard.claim('ch_b', KEY);
  release(other, undefined);
  assert.equal(guard.pending, 0);
});

test('identical requests in flight: the others wait for the first and answer with its id', async () => {
  const store = fakeStore();
  const guard = new ReplayGuard(store, () => T);
  const first = await guard.claim('ch_a', KEY);
  assert.equal(guard.pending, 1);
  let settled = 0;
  const waiting = Array.from({ length: 7 }, () =>
    guard.claim('ch_a', KEY).then((c) => {
      settled++;
      return c;
    }),
  );
  // Nothing else can settle them: they are parked behind the first.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, 0, 'the others wait while the first is being stored');
  store.index.add('ch_a', KEY.key, 'evt_first', T);
  release(first, 'evt_first');
  const claims = await Promise.all(waiting);
  assert.deepEqual(
    claims,
    Array.from({ length: 7 }, () => ({ duplicateOf: 'evt_first' })),
  );
  assert.equal(guard.pending, 0);
  assert.equal(store.lookups(), 1, 'only the first looked in the store');
});

test('when the first could not be stored, one waiting request takes its place', async () => {
  const store = fakeStore();
  const guard = new ReplayGuard(store, () => T);
  const first = await guard.claim('ch_a', KEY);
  const second = guard.claim('ch_a', KEY);
  const third = guard.claim('ch_a', KEY);
  release(first, undefined);
  const taken = await second;
  release(taken, 'evt_second');
  assert.deepEqual(await third, { duplicateOf: 'evt_second' });
  assert.equal(guard.pending, 0);
});

test('a failing look-up releases the key and reaches the caller', async () => {
  let fail = true;
  const store = {
    findByDedupKey: () =>
      fail ? Promise.reject(new Error('store down')) : Promise.resolve(undefined),
  };
  const guard = new ReplayGuard(store, () => T);
  await assert.rejects(guard.claim('ch_a', KEY), /store down/);
  assert.equal(guard.pending, 0);
  fail = false;
  const claim = await guard.claim('ch_a', KEY);
  release(claim, 'evt_1');
  // Releasing twice changes nothing.
  if (claim.duplicateOf === undefined) claim.release(undefined);
  assert.equal(guard.pending, 0);
});
