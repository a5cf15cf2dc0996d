/**
 * `appendClaimed`: a new event claimed in its own append (rule 3), refused behind a due event
 * that is not claimed (rule 5), and a claim like any other afterwards: settled, renewed,
 * released, or run out and claimed by another owner.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  LEASE_MS,
  START,
  appendAll,
  assertSamePayload,
  claimRequest,
  claimedIds,
  counts,
  eventId,
  FeedLog,
  fresh,
  mustGet,
  only,
  outcome,
  payload,
  ref,
  rejectedPayload,
  type Backend,
} from './support.ts';

const claimBy = (owner: string, now: number, leaseMs = LEASE_MS) => ({ owner, now, leaseMs });

export function appendClaimedTests(backend: Backend): void {
  test('appendClaimed: the new event is delivering, its claim held like any other', async (t) => {
    const { store } = await fresh(t, backend);
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    const p = payload(1);
    const got = await store.appendClaimed(p, claimBy('r1', START));
    assert.equal(typeof got.epoch, 'number');
    assert.equal(got.event.id, eventId(1));
    assert.equal(got.event.status, 'delivering');
    assert.equal((await mustGet(store, eventId(1))).status, 'delivering');
    assert.deepEqual(await store.countByStatus(), counts({ delivering: 1 }));
    assertSamePayload(await store.readPayload(eventId(1)), p);
    assert.ok(
      feed.changes.some(
        (c) => c.type === 'event' && c.event.id === eventId(1) && c.event.status === 'delivering',
      ),
      'the feed reports the event, delivering',
    );
    assert.ok(
      !feed.changes.some((c) => c.type === 'work'),
      'no work reported: there is nothing to claim',
    );

    // Nobody else gets it; the lease is what may wake a claimer.
    assert.deepEqual(await store.claim(claimRequest('r2', 'ch_a', START + 1)), {
      claims: [],
      wakeAt: START + LEASE_MS,
    });
    const claim = { event: got.event, epoch: got.epoch! };
    assert.equal(await store.renewClaims('r1', [ref(claim)], START + 10, LEASE_MS), 1);
    const done = await store.settle(ref(claim), outcome('delivered', START + 20, 1));
    assert.equal(done?.status, 'delivered');
    assert.equal(done?.attemptCount, 1);
    assert.deepEqual(await store.countByStatus(), counts({ delivered: 1 }));
  });

  test('appendClaimed: refused behind a due event that is not claimed (rule 5)', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1)]);
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    const behind = await store.appendClaimed(payload(2), claimBy('r1', START));
    assert.equal(behind.epoch, null, 'event 1 is due and not claimed: it comes first');
    assert.equal(behind.event.status, 'queued');
    assert.equal((await mustGet(store, eventId(2))).status, 'queued');
    assert.ok(
      feed.changes.some((c) => c.type === 'work' && c.channelId === 'ch_a'),
      'work reported, as for any queued event',
    );
    assert.deepEqual(await store.countByStatus(), counts({ queued: 2 }));
    const first = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 1 }));
    assert.deepEqual(claimedIds(first.claims), [eventId(1)], 'oldest first');

    // Event 1 now claimed: nothing due is left unclaimed but event 2.
    const second = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    assert.equal(second.event.id, eventId(2));
    // Another channel's due event does not matter.
    await appendAll(store, [payload(3, { channelId: 'ch_b' })]);
    const other = await store.appendClaimed(payload(4), claimBy('r1', START));
    assert.equal(typeof other.epoch, 'number', "ch_b's queue is not ch_a's");
  });

  test('appendClaimed: a retry waiting for its time does not hold it back, one due does', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1)]);
    const c1 = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    assert.ok(await store.settle(ref(c1), outcome('queued', START, 1, START + 5_000)));

    const early = await store.appendClaimed(payload(2), claimBy('r1', START + 1_000));
    assert.equal(typeof early.epoch, 'number', 'the retry is not due yet');
    const late = await store.appendClaimed(payload(3), claimBy('r1', START + 5_000));
    assert.equal(late.epoch, null, 'the retry is due: it comes first');
    const next = await store.claim(claimRequest('r1', 'ch_a', START + 5_000));
    assert.deepEqual(claimedIds(next.claims), [eventId(1), eventId(3)]);
  });

  test('appendClaimed: a lease that ran out is claimed by another owner, the first refused', async (t) => {
    const { store } = await fresh(t, backend);
    const lease = 10_000;
    const got = await store.appendClaimed(payload(1), claimBy('r1', START, lease));
    assert.ok(got.epoch !== null);
    const mine = { event: got.event, epoch: got.epoch };
    const later = await store.claim(claimRequest('r2', 'ch_a', START + lease, { leaseMs: lease }));
    const theirs = only(later.claims);
    assert.equal(theirs.event.id, eventId(1));
    assert.ok(theirs.epoch > mine.epoch, 'a larger epoch');
    assert.equal(await store.settle(ref(mine), outcome('delivered', START + lease, 1)), null);
    assert.equal(await store.release(ref(mine)), false);
    const done = await store.settle(ref(theirs), outcome('delivered', START + lease + 1, 1));
    assert.equal(done?.status, 'delivered');

    // A release puts a claimed-at-append event back in the queue like any claim.
    const again = await store.appendClaimed(payload(2), claimBy('r1', START + lease + 2));
    assert.ok(again.epoch !== null);
    assert.equal(await store.release({ id: eventId(2), epoch: again.epoch }), true);
    const back = only((await store.claim(claimRequest('r2', 'ch_a', START + lease + 3))).claims);
    assert.equal(back.event.id, eventId(2));
  });

  test('appendClaimed: a refused request is never claimed', async (t) => {
    const { store } = await fresh(t, backend);
    await assert.rejects(store.appendClaimed(rejectedPayload(1), claimBy('r1', START)), TypeError);
    assert.equal(await store.getEvent(eventId(1)), undefined, 'nothing written');
  });

  test('appendClaimed: the claim across a reopen, as any claim', async (t) => {
    const h = await fresh(t, backend);
    const got = await h.store.appendClaimed(payload(1), claimBy('r1', START));
    assert.ok(got.epoch !== null);
    const store = await h.reopen();
    const after = await store.claim(claimRequest('r2', 'ch_a', START + 1));
    if (backend.claimsSurviveReopen) {
      assert.deepEqual(after, { claims: [], wakeAt: START + LEASE_MS });
    } else {
      assert.deepEqual(claimedIds(after.claims), [eventId(1)], 'claims end with the process');
    }
  });
}
