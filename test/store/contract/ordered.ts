/**
 * Ordered channels (rule 4): one event per ordering key at a time, the oldest pending one, and
 * the channel's `ordered` setting taking effect at once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../../../server/store/types.ts';
import {
  START,
  appendAll,
  claimRequest,
  claimedIds,
  eventId,
  fresh,
  mustGet,
  only,
  outcome,
  payload,
  ref,
  rejectedPayload,
  skip,
} from './support.ts';
import type { Backend } from './support.ts';

const CH = 'ch_o';

function keyed(i: number, orderKey?: string) {
  return payload(i, { channelId: CH, ...(orderKey === undefined ? {} : { orderKey }) });
}

function ordered(
  store: Store,
  owner: string,
  now: number,
  opts: { limit?: number; leaseMs?: number } = {},
) {
  return store.claim(claimRequest(owner, CH, now, { ...opts, ordered: true }));
}

export function orderedTests(backend: Backend): void {
  test('ordered: only the oldest pending event of the key, the next once the head is finished', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [
      rejectedPayload(1, { channelId: CH }),
      keyed(2),
      keyed(3),
      keyed(4),
      keyed(5),
      keyed(6),
    ]);
    const heads: string[] = [];
    let now = START;
    for (const status of ['delivered', 'failed', 'filtered'] as const) {
      const head = only((await ordered(store, 'r1', now)).claims);
      heads.push(head.event.id);
      assert.deepEqual(
        (await ordered(store, 'r2', now + 1)).claims,
        [],
        'one of the key at a time',
      );
      assert.deepEqual((await ordered(store, 'r1', now + 1)).claims, [], 'also for its owner');
      assert.equal((await store.settle(ref(head), outcome(status, now + 2, 1)))?.status, status);
      now += 10;
    }
    assert.deepEqual(heads, [eventId(2), eventId(3), eventId(4)], 'in arrival order');

    // The head waits for its retry: it holds the key.
    const five = only((await ordered(store, 'r1', now)).claims);
    assert.equal(five.event.id, eventId(5));
    assert.ok(await store.settle(ref(five), outcome('queued', now, 1, START + 5_000)));
    assert.deepEqual(await ordered(store, 'r2', START + 1_000), {
      claims: [],
      wakeAt: START + 5_000,
    });
    const retry = only((await ordered(store, 'r2', START + 5_000)).claims);
    assert.equal(retry.event.id, eventId(5), 'the head again, not the event behind it');
    assert.ok(await store.settle(ref(retry), outcome('delivered', START + 5_001, 2)));
    assert.deepEqual(claimedIds((await ordered(store, 'r2', START + 5_002)).claims), [eventId(6)]);
  });

  test('ordered keys: different keys in parallel, never two of one key at once', async (t) => {
    const { store } = await fresh(t, backend);
    // a: 1, 3, 6; b: 2, 4; c: 5.
    const appended = await appendAll(store, [
      keyed(1, 'a'),
      keyed(2, 'b'),
      keyed(3, 'a'),
      keyed(4, 'b'),
      keyed(5, 'c'),
      keyed(6, 'a'),
    ]);
    assert.deepEqual(
      appended.map((e) => e.orderKey),
      ['a', 'b', 'a', 'b', 'c', 'a'],
    );
    const first = await ordered(store, 'r1', START, { limit: 2 });
    assert.deepEqual(
      claimedIds(first.claims),
      [eventId(1), eventId(2)],
      'limit, oldest heads first',
    );
    const second = await ordered(store, 'r2', START);
    assert.deepEqual(claimedIds(second.claims), [eventId(5)], 'only the free key');
    assert.deepEqual((await ordered(store, 'r3', START)).claims, []);

    const b1 = first.claims.find((c) => c.event.id === eventId(2));
    const a1 = first.claims.find((c) => c.event.id === eventId(1));
    assert.ok(a1 && b1);
    assert.ok(await store.settle(ref(b1), outcome('delivered', START + 1, 1)));
    const b2 = only((await ordered(store, 'r3', START + 2)).claims);
    assert.equal(b2.event.id, eventId(4), 'key b moves on; key a is still held');

    // The head of a waits for its retry: key a stays held, the others go on.
    assert.ok(await store.settle(ref(a1), outcome('queued', START + 3, 1, START + 5_000)));
    assert.equal(await store.release(ref(b2)), true);
    const during = await ordered(store, 'r3', START + 100);
    assert.deepEqual(claimedIds(during.claims), [eventId(4)], 'b again; nothing of key a');
    assert.equal(during.wakeAt, START + 5_000);
    const due = await ordered(store, 'r3', START + 5_000);
    assert.deepEqual(claimedIds(due.claims), [eventId(1)]);
    assert.equal(only(due.claims).event.attemptCount, 1);
  });

  test('ordered: a skipped head frees its key', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [keyed(1, 'a'), keyed(2, 'a'), keyed(3, 'b')]);
    const got = await ordered(store, 'r1', START);
    assert.deepEqual(claimedIds(got.claims), [eventId(1), eventId(3)]);
    const head = got.claims.find((c) => c.event.id === eventId(1));
    const other = got.claims.find((c) => c.event.id === eventId(3));
    assert.ok(head && other);
    assert.ok(await store.settle(ref(other), outcome('delivered', START + 1, 1)));
    assert.ok(await store.settle(ref(head), outcome('queued', START + 1, 1, START + 600_000)));
    assert.deepEqual((await ordered(store, 'r1', START + 2)).claims, [], 'the head holds key a');

    const skipped = await store.updateEvent(eventId(1), skip(START + 3, 1), { expect: ['queued'] });
    assert.equal(skipped.status, 'failed');
    const next = only((await ordered(store, 'r2', START + 4)).claims);
    assert.equal(next.event.id, eventId(2));
    assert.ok(await store.settle(ref(next), outcome('delivered', START + 5, 1)));
    assert.deepEqual(
      (await ordered(store, 'r2', START + 700_000)).claims,
      [],
      'never the skipped one',
    );
  });

  test('ordered: a head whose lease ran out is claimed again before the next of its key, once', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [keyed(1), keyed(2)]);
    const lease = 10_000;
    const a = only((await ordered(store, 'r1', START, { leaseMs: lease })).claims);
    assert.equal(a.event.id, eventId(1));
    assert.deepEqual(
      (await ordered(store, 'r2', START + lease - 1, { leaseMs: lease })).claims,
      [],
    );
    const b = only((await ordered(store, 'r2', START + lease + 1, { leaseMs: lease })).claims);
    assert.equal(b.event.id, eventId(1), 'the head again');
    assert.ok(b.epoch > a.epoch);
    for (const owner of ['r1', 'r2', 'r3']) {
      const again = await ordered(store, owner, START + lease + 2);
      assert.deepEqual(again.claims, [], `r2's claim holds the key (${owner})`);
    }
    assert.equal(await store.settle(ref(a), outcome('delivered', START + lease + 3, 1)), null);
    assert.equal((await mustGet(store, eventId(1))).status, 'delivering');
    assert.deepEqual((await ordered(store, 'r1', START + lease + 4)).claims, []);
    assert.ok(await store.settle(ref(b), outcome('delivered', START + lease + 5, 1)));
    assert.deepEqual(claimedIds((await ordered(store, 'r1', START + lease + 6)).claims), [
      eventId(2),
    ]);
  });

  test('ordered: a released head comes before the next of its key, at notBefore', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [keyed(1), keyed(2)]);
    const a = only((await ordered(store, 'r1', START)).claims);
    assert.equal(await store.release(ref(a), { notBefore: START + 20_000 }), true);
    assert.deepEqual(await ordered(store, 'r2', START + 15_000), {
      claims: [],
      wakeAt: START + 20_000,
    });
    const b = only((await ordered(store, 'r2', START + 20_000)).claims);
    assert.equal(b.event.id, eventId(1));
    assert.ok(b.epoch > a.epoch);
    assert.equal(await store.release(ref(b)), true);
    const c = only((await ordered(store, 'r1', START + 20_001)).claims);
    assert.equal(c.event.id, eventId(1), 'released without notBefore: due at once, still first');
  });

  test('ordered setting changes apply at once: an unordered claim ignores keys, an ordered one sees all claims', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [keyed(1, 'a'), keyed(2, 'a'), keyed(3, 'a'), keyed(4, 'b')]);
    const o = await ordered(store, 'r1', START);
    assert.deepEqual(claimedIds(o.claims), [eventId(1), eventId(4)]);
    const u = await store.claim(claimRequest('r2', CH, START, { ordered: false }));
    assert.deepEqual(claimedIds(u.claims), [eventId(2), eventId(3)], 'keys are ignored');

    // Claimed without order, then ordered: the oldest pending event of key c is claimed, so
    // nothing of c is claimable until it and the next are finished.
    await appendAll(store, [keyed(5, 'c'), keyed(6, 'c')]);
    const loose = await store.claim(claimRequest('r2', CH, START + 1, { ordered: false }));
    assert.deepEqual(claimedIds(loose.claims), [eventId(5), eventId(6)]);
    await store.appendEvent(keyed(7, 'c'));
    assert.deepEqual((await ordered(store, 'r1', START + 2)).claims, []);
    const c5 = loose.claims.find((c) => c.event.id === eventId(5));
    const c6 = loose.claims.find((c) => c.event.id === eventId(6));
    assert.ok(c5 && c6);
    assert.ok(await store.settle(ref(c6), outcome('delivered', START + 3, 1)));
    assert.deepEqual(
      (await ordered(store, 'r1', START + 4)).claims,
      [],
      'event 5 is still claimed',
    );
    assert.ok(await store.settle(ref(c5), outcome('delivered', START + 5, 1)));
    assert.deepEqual(claimedIds((await ordered(store, 'r1', START + 6)).claims), [eventId(7)]);
  });
}
