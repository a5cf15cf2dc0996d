/**
 * The lanes of an ordered channel, as a pure unit: one FIFO per ordering key, at most one
 * event of a key out at a time, keys independent of each other.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lanes } from '../../server/dispatch/lanes.ts';

/** Takes until nothing is offered (bounded); returns what was offered, as `key:id`. */
function takeAll(lanes: Lanes, max = 1_000): string[] {
  const out: string[] = [];
  for (let i = 0; i < max; i++) {
    const next = lanes.take();
    if (!next) return out;
    out.push(`${next.key}:${next.id}`);
  }
  throw new Error(`take() offered more than ${max} events`);
}

test('take offers the head of a lane; the key is held until done', () => {
  const lanes = new Lanes();
  lanes.push('a', 'a1');
  lanes.push('a', 'a2');
  lanes.push('a', 'a3');
  assert.equal(lanes.head('a'), 'a1');
  assert.deepEqual(lanes.take(), { key: 'a', id: 'a1' });
  assert.equal(lanes.take(), undefined, 'a1 is out: a2 waits');
  lanes.push('a', 'a4');
  assert.equal(lanes.take(), undefined, 'a push while the key is held offers nothing');
  lanes.done('a', 'a1');
  assert.equal(lanes.head('a'), 'a2');
  assert.deepEqual(takeAll(lanes), ['a:a2']);
  lanes.done('a', 'a2');
  assert.deepEqual(takeAll(lanes), ['a:a3']);
  lanes.done('a', 'a3');
  assert.deepEqual(takeAll(lanes), ['a:a4']);
  lanes.done('a', 'a4');
  assert.deepEqual(takeAll(lanes), []);
  assert.equal(lanes.head('a'), undefined);
  assert.deepEqual([...lanes.ids()], []);
});

test('release: the head stays the head and is offered again', () => {
  const lanes = new Lanes();
  lanes.push('k', 'e1');
  lanes.push('k', 'e2');
  assert.deepEqual(lanes.take(), { key: 'k', id: 'e1' });
  assert.equal(lanes.take(), undefined);
  lanes.release('k');
  assert.deepEqual(takeAll(lanes), ['k:e1'], 'e1 again, not e2');
  lanes.release('k');
  lanes.release('k');
  assert.deepEqual(takeAll(lanes), ['k:e1'], 'released twice: still offered once');
  lanes.done('k', 'e1');
  assert.deepEqual(takeAll(lanes), ['k:e2']);
  // Releasing a key with an empty lane offers nothing.
  lanes.done('k', 'e2');
  lanes.release('k');
  lanes.release('never-seen');
  assert.deepEqual(takeAll(lanes), []);
});

test('keys are independent: one held key does not hold the others', () => {
  const lanes = new Lanes();
  lanes.push('a', 'a1');
  lanes.push('b', 'b1');
  lanes.push('a', 'a2');
  lanes.push('c', 'c1');
  lanes.push('b', 'b2');
  assert.deepEqual(takeAll(lanes), ['a:a1', 'b:b1', 'c:c1'], 'one head per key, in ready order');
  // b finishes, a fails and waits (stays held), c finishes.
  lanes.done('b', 'b1');
  lanes.done('c', 'c1');
  assert.deepEqual(takeAll(lanes), ['b:b2'], 'b moves on while a is held');
  lanes.push('c', 'c2');
  assert.deepEqual(takeAll(lanes), ['c:c2']);
  lanes.release('a');
  assert.deepEqual(takeAll(lanes), ['a:a1'], 'a offers its same head again');
  lanes.done('a', 'a1');
  assert.deepEqual(takeAll(lanes), ['a:a2']);
  assert.deepEqual(new Set(lanes.ids()), new Set(['a2', 'b2', 'c2']));
});

test('the empty key is a lane like any other', () => {
  const lanes = new Lanes();
  lanes.push('', 'x1');
  lanes.push('', 'x2');
  lanes.push('k', 'k1');
  assert.deepEqual(takeAll(lanes), [':x1', 'k:k1']);
  lanes.done('', 'x1');
  assert.deepEqual(takeAll(lanes), [':x2']);
});

test('done of a non-head (an operator skip further back) keeps the rest in order', () => {
  const lanes = new Lanes();
  for (const id of ['a1', 'a2', 'a3', 'a4']) lanes.push('a', id);
  assert.deepEqual(lanes.take(), { key: 'a', id: 'a1' });
  lanes.done('a', 'a3');
  assert.equal(lanes.take(), undefined, 'the head is still out: removing a3 offers nothing');
  assert.equal(lanes.head('a'), 'a1');
  assert.deepEqual([...lanes.ids()], ['a1', 'a2', 'a4']);
  lanes.done('a', 'a1');
  assert.deepEqual(takeAll(lanes), ['a:a2']);
  lanes.done('a', 'a2');
  assert.deepEqual(takeAll(lanes), ['a:a4'], 'a3 is gone: a4 follows a2');
  lanes.done('a', 'a4');
  assert.deepEqual(takeAll(lanes), []);
  assert.deepEqual([...lanes.ids()], []);
});

test('done of a non-head while the key is idle; then of the head before it is taken', () => {
  const lanes = new Lanes();
  for (const id of ['b1', 'b2', 'b3']) lanes.push('b', id);
  lanes.done('b', 'b2');
  assert.deepEqual([...lanes.ids()], ['b1', 'b3']);
  // The head skipped before it was ever taken: the next one is offered, once.
  lanes.done('b', 'b1');
  assert.deepEqual(takeAll(lanes), ['b:b3']);
  lanes.done('b', 'b3');
  // done of an unknown id or key changes nothing.
  lanes.push('b', 'b4');
  lanes.done('b', 'nope');
  lanes.done('nokey', 'b4');
  assert.deepEqual([...lanes.ids()], ['b4']);
  assert.deepEqual(takeAll(lanes), ['b:b4']);
});

test('a lane emptied while its key waited in the ready list offers nothing stale', () => {
  const lanes = new Lanes();
  lanes.push('a', 'a1');
  assert.deepEqual(lanes.take(), { key: 'a', id: 'a1' });
  lanes.release('a'); // ready again…
  lanes.done('a', 'a1'); // …but finished before anyone took it
  assert.deepEqual(takeAll(lanes), []);
  lanes.push('a', 'a2');
  assert.deepEqual(takeAll(lanes), ['a:a2'], 'a new event of the key is offered exactly once');
});

/** Deterministic PRNG (mulberry32), so that a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

test('a random mix of pushes, failures and successes keeps arrival order per key', () => {
  const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4'];
  const PER_KEY = 200;
  const random = prng(20_240_601);
  const lanes = new Lanes();
  const pushed = new Map<string, string[]>(KEYS.map((k) => [k, []]));
  const completed = new Map<string, string[]>(KEYS.map((k) => [k, []]));
  /** Events out now (taken, not yet released or done), by key. */
  const out = new Map<string, string>();
  let maxOutKeys = 0;
  let failures = 0;
  let toPush = KEYS.length * PER_KEY;
  const counters = new Map<string, number>(KEYS.map((k) => [k, 0]));
  let finished = 0;
  for (let step = 0; step < 200_000 && finished < KEYS.length * PER_KEY; step++) {
    const r = random();
    if (r < 0.35 && toPush > 0) {
      const key = KEYS[Math.floor(random() * KEYS.length)]!;
      const n = counters.get(key)!;
      if (n >= PER_KEY) continue;
      counters.set(key, n + 1);
      const id = `${key}-${n}`;
      pushed.get(key)!.push(id);
      lanes.push(key, id);
      toPush--;
    } else if (r < 0.65) {
      const next = lanes.take();
      if (!next) continue;
      assert.equal(out.has(next.key), false, `two events of ${next.key} out at once`);
      assert.equal(next.id, lanes.head(next.key), 'the offered event is its lane head');
      out.set(next.key, next.id);
      maxOutKeys = Math.max(maxOutKeys, out.size);
    } else if (out.size > 0) {
      const keys = [...out.keys()];
      const key = keys[Math.floor(random() * keys.length)]!;
      const id = out.get(key)!;
      out.delete(key);
      if (random() < 0.3) {
        failures++;
        lanes.release(key);
      } else {
        completed.get(key)!.push(id);
        finished++;
        lanes.done(key, id);
      }
    }
  }
  for (const key of KEYS) {
    assert.equal(completed.get(key)!.length, PER_KEY, `${key}: all ${PER_KEY} completed`);
    assert.deepEqual(completed.get(key), pushed.get(key), `${key}: completed in arrival order`);
  }
  assert.ok(failures > 0, `${failures} failures (the run exercised release)`);
  assert.ok(maxOutKeys >= 2, `up to ${maxOutKeys} keys were out at once`);
  assert.deepEqual([...lanes.ids()], []);
  assert.equal(lanes.take(), undefined);
});

test('hold: a key with events in flight outside its lane offers nothing until each is back', () => {
  const lanes = new Lanes();
  lanes.hold('k');
  lanes.hold('k');
  lanes.push('k', 'k1');
  lanes.push('k', 'k2');
  lanes.push('other', 'o1');
  assert.deepEqual(takeAll(lanes), ['other:o1'], 'k is held twice; other keys are not');
  lanes.release('k');
  assert.deepEqual(takeAll(lanes), [], 'a release does not lift a hold');
  lanes.unhold('k');
  assert.deepEqual(takeAll(lanes), [], 'still held once');
  lanes.unhold('k');
  assert.deepEqual(takeAll(lanes), ['k:k1']);
  lanes.done('k', 'k1');
  assert.deepEqual(takeAll(lanes), ['k:k2']);
  // An unhold without a hold (a stale one) lifts nothing below zero.
  lanes.unhold('k');
  lanes.hold('k');
  lanes.done('k', 'k2');
  lanes.push('k', 'k3');
  assert.deepEqual(takeAll(lanes), [], 'one hold still counts after a stale unhold');
  lanes.unhold('k');
  assert.deepEqual(takeAll(lanes), ['k:k3']);
});

test('events out of turn keep their place: one done leaves the lane, one back for a retry goes first', () => {
  const lanes = new Lanes();
  // k1 and k2 are in flight since before the channel became ordered; k3 arrived after them.
  lanes.push('k', 'k1');
  lanes.hold('k');
  lanes.push('k', 'k2');
  lanes.hold('k');
  lanes.push('k', 'k3');
  assert.deepEqual(takeAll(lanes), []);
  // k2 is delivered: it leaves the lane from behind k1.
  lanes.unhold('k');
  lanes.done('k', 'k2');
  assert.deepEqual(takeAll(lanes), [], 'k1 still out');
  assert.deepEqual([...lanes.ids()], ['k1', 'k3']);
  // k1 failed and waits for a retry: back in turn, it is still the head.
  lanes.unhold('k');
  assert.deepEqual(takeAll(lanes), ['k:k1']);
  lanes.done('k', 'k1');
  assert.deepEqual(takeAll(lanes), ['k:k3']);
});

test('mayOffer: true while a key is listed as ready, false once nothing is', () => {
  const lanes = new Lanes();
  assert.equal(lanes.mayOffer, false);
  lanes.push('k', 'k1');
  assert.equal(lanes.mayOffer, true);
  assert.deepEqual(lanes.take(), { key: 'k', id: 'k1' });
  assert.equal(lanes.mayOffer, false, 'the only key is out');
  lanes.push('k', 'k2');
  assert.equal(lanes.mayOffer, false, 'a push behind a busy head lists nothing');
  lanes.done('k', 'k1');
  assert.equal(lanes.mayOffer, true);
  lanes.hold('k');
  lanes.done('k', 'k2');
  assert.equal(lanes.mayOffer, true, 'listed before the lane emptied: take finds it stale');
  assert.equal(lanes.take(), undefined);
  assert.equal(lanes.mayOffer, false);
});
