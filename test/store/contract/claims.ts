/**
 * Claims on unordered channels (rules 3 and 5): what is claimable, leases and epochs, renewal,
 * release, settle, replay, and lazy settles (rule 2).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  START,
  appendAll,
  claimRequest,
  claimedIds,
  counts,
  eventId,
  fresh,
  ids,
  listAll,
  mustGet,
  only,
  outcome,
  payload,
  ref,
  rejectedPayload,
  replay,
  type Backend,
} from './support.ts';

export function claimTests(backend: Backend): void {
  test('claim: oldest first, due events only, limit honoured, never claimed twice', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [
      payload(1),
      payload(2),
      payload(3),
      payload(4, { channelId: 'ch_b' }),
      rejectedPayload(5),
      payload(6),
      payload(7),
    ]);
    const first = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 2 }));
    assert.deepEqual(claimedIds(first.claims), [eventId(1), eventId(2)]);
    for (const claim of first.claims) {
      assert.equal(claim.event.status, 'delivering');
      assert.equal(claim.event.channelId, 'ch_a');
    }
    // Event 1 fails and waits for its retry; event 2 stays claimed.
    const one = first.claims.find((c) => c.event.id === eventId(1));
    assert.ok(one);
    assert.ok(await store.settle(ref(one), outcome('queued', START, 1, START + 5_000)));

    const second = await store.claim(claimRequest('r2', 'ch_a', START + 1, { limit: 2 }));
    assert.deepEqual(claimedIds(second.claims), [eventId(3), eventId(6)], 'due, oldest first');
    const third = await store.claim(claimRequest('r1', 'ch_a', START + 2));
    assert.deepEqual(claimedIds(third.claims), [eventId(7)], 'the rest; no rejected event');
    const none = await store.claim(claimRequest('r1', 'ch_a', START + 3));
    assert.deepEqual(none.claims, [], 'claimed events are not claimed again, by any owner');
    assert.deepEqual(
      (await store.claim(claimRequest('r3', 'ch_a', START + 4))).claims,
      [],
      'nor by a third owner',
    );

    const b = await store.claim(claimRequest('r1', 'ch_b', START));
    assert.deepEqual(claimedIds(b.claims), [eventId(4)], 'claims are per channel');
    assert.deepEqual((await store.claim(claimRequest('r1', 'ch_c', START))).claims, []);
  });

  test('claim: a due retry is never overtaken by events that arrived after it (rule 5)', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    const tried = (await store.claim(claimRequest('r1', 'ch_a', START))).claims;
    const [c1, c2] = tried.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(c1 && c2);
    assert.ok(await store.settle(ref(c1), outcome('queued', START, 1, START + 9_000)));
    assert.ok(await store.settle(ref(c2), outcome('queued', START, 1, START + 4_000)));
    await appendAll(store, [payload(8), payload(9)]);
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const got = await store.claim(claimRequest('r1', 'ch_a', START + 9_000, { limit: 1 }));
      order.push(only(got.claims).event.id);
    }
    assert.deepEqual(order.slice(0, 2).sort(), [eventId(1), eventId(2)], 'the retries first');
    assert.deepEqual(order.slice(2), [eventId(8), eventId(9)], 'then the others by arrival');
  });

  test('claim: wakeAt is the earliest retry time waiting, null when nothing waits', async (t) => {
    const { store } = await fresh(t, backend);
    assert.deepEqual(await store.claim(claimRequest('r1', 'ch_a', START)), {
      claims: [],
      wakeAt: null,
    });
    await appendAll(store, [payload(1), payload(2), payload(3)]);
    const got = await store.claim(claimRequest('r1', 'ch_a', START));
    const [c1, c2, c3] = got.claims.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(c1 && c2 && c3);
    assert.ok(await store.settle(ref(c1), outcome('queued', START, 1, START + 9_000)));
    assert.ok(await store.settle(ref(c2), outcome('queued', START, 1, START + 4_000)));
    assert.ok(await store.settle(ref(c3), outcome('delivered', START, 1)));

    const early = await store.claim(claimRequest('r1', 'ch_a', START + 1_000));
    assert.deepEqual(early, { claims: [], wakeAt: START + 4_000 });
    const mid = await store.claim(claimRequest('r1', 'ch_a', START + 4_000));
    assert.deepEqual(claimedIds(mid.claims), [eventId(2)], 'due at its retry time');
    assert.equal(mid.wakeAt, START + 9_000, 'the next retry time waiting');
    assert.ok(await store.settle(ref(only(mid.claims)), outcome('delivered', START + 4_000, 2)));
    const late = await store.claim(claimRequest('r1', 'ch_a', START + 9_000));
    assert.deepEqual(claimedIds(late.claims), [eventId(1)]);
    assert.ok(await store.settle(ref(only(late.claims)), outcome('failed', START + 9_000, 2)));
    assert.deepEqual(await store.claim(claimRequest('r1', 'ch_a', START + 10_000)), {
      claims: [],
      wakeAt: null,
    });
  });

  test('a lease that ran out: another owner claims it with a larger epoch, the first owner is refused', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    const lease = 10_000;
    const a = only(
      (await store.claim(claimRequest('r1', 'ch_a', START, { limit: 1, leaseMs: lease }))).claims,
    );
    assert.equal(a.event.id, eventId(1));
    const held = await store.claim(
      claimRequest('r2', 'ch_a', START + lease - 1, { limit: 1, leaseMs: lease }),
    );
    assert.deepEqual(claimedIds(held.claims), [eventId(2)], 'the lease still holds event 1');

    const b = only(
      (await store.claim(claimRequest('r2', 'ch_a', START + lease + 1, { leaseMs: lease }))).claims,
    );
    assert.equal(b.event.id, eventId(1));
    assert.ok(b.epoch > a.epoch, `epoch ${b.epoch} > ${a.epoch}`);
    const claimed = await mustGet(store, eventId(1));
    assert.equal(claimed.status, 'delivering');
    for (const owner of ['r1', 'r2', 'r3']) {
      const again = await store.claim(claimRequest(owner, 'ch_a', START + lease + 2));
      assert.deepEqual(again.claims, [], `the new lease holds (${owner})`);
    }

    assert.equal(await store.settle(ref(a), outcome('delivered', START + lease + 2, 1)), null);
    assert.equal(await store.release(ref(a)), false);
    assert.equal(await store.release(ref(a), { notBefore: START + 99_000 }), false);
    assert.deepEqual(await store.getEvent(eventId(1)), claimed, 'the stale owner changed nothing');

    const settled = await store.settle(ref(b), outcome('delivered', START + lease + 3, 1));
    assert.equal(settled?.status, 'delivered', 'the new owner settles');
    assert.equal(settled?.attemptCount, 1);
    assert.deepEqual(await store.getEvent(eventId(1)), settled);

    // An epoch that never was is refused too.
    const two = only(held.claims);
    assert.equal(
      await store.settle({ id: eventId(2), epoch: two.epoch + 1 }, outcome('failed', START, 1)),
      null,
    );
    assert.equal(await store.release({ id: eventId(2), epoch: two.epoch - 1 }), false);
    assert.equal((await mustGet(store, eventId(2))).status, 'delivering');
    assert.equal(await store.release(ref(two)), true);
  });

  test('renewClaims extends the named claims of one owner, and only those', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2), payload(3), payload(4)]);
    const lease = 10_000;
    const mine = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 3, leaseMs: lease }));
    assert.equal(mine.claims.length, 3);
    const theirs = only(
      (await store.claim(claimRequest('r2', 'ch_a', START, { leaseMs: lease }))).claims,
    );
    // r1 knows of two of its three claims (the third one's answer was lost on the way back).
    const [known1, known2, lost] = mine.claims.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(known1 && known2 && lost);
    const named = [ref(known1), ref(known2)];
    const wrong = [
      { id: lost.event.id, epoch: lost.epoch + 1 }, // not the claim's epoch
      ref(theirs), // another owner's
      { id: 'evt_unknown', epoch: 1 },
    ];
    assert.equal(await store.renewClaims('r1', [...named, ...wrong], START + 5_000, lease), 2);
    assert.equal(await store.renewClaims('r9', named, START + 5_000, lease), 0, 'not its claims');
    assert.equal(await store.renewClaims('r1', [], START + 5_000, lease), 0, 'none named');

    // The owner's own leases count in the wake-up time: the earliest is the unnamed one's.
    const nothing = await store.claim(claimRequest('r1', 'ch_a', START + 6_000));
    assert.deepEqual(nothing, { claims: [], wakeAt: START + lease });

    // Between the old end (START + 10 s) and the new one (START + 15 s): the named claims hold;
    // r2's and the unnamed one ran out.
    const between = await store.claim(
      claimRequest('r3', 'ch_a', START + 12_000, { leaseMs: lease }),
    );
    assert.deepEqual(claimedIds(between.claims), claimedIds([lost, theirs]));
    for (const claim of [known1, known2]) {
      assert.equal((await mustGet(store, claim.event.id)).status, 'delivering');
    }
    const after = await store.claim(claimRequest('r3', 'ch_a', START + 15_001, { leaseMs: lease }));
    assert.deepEqual(
      claimedIds(after.claims),
      claimedIds([known1, known2]),
      'the renewed lease ran out',
    );
    for (const claim of mine.claims) {
      assert.equal(await store.settle(ref(claim), outcome('delivered', START + 15_002, 1)), null);
    }
  });

  test('release: the event is claimable again, at notBefore when given', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    const got = await store.claim(claimRequest('r1', 'ch_a', START));
    const [c1, c2] = got.claims.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(c1 && c2);

    assert.equal(await store.release(ref(c1)), true);
    assert.equal(await store.release(ref(c1)), false, 'a released claim no longer holds');
    const released = await mustGet(store, eventId(1));
    assert.equal(released.status, 'queued');
    assert.equal(released.attemptCount, 0, 'a release is no attempt');
    assert.deepEqual(released.attempts, []);
    const again = only((await store.claim(claimRequest('r2', 'ch_a', START + 1))).claims);
    assert.equal(again.event.id, eventId(1));
    assert.ok(again.epoch > c1.epoch);
    assert.equal(await store.settle(ref(c1), outcome('delivered', START + 2, 1)), null);

    assert.equal(await store.release(ref(c2), { notBefore: START + 3_000 }), true);
    assert.equal((await mustGet(store, eventId(2))).status, 'queued');
    assert.deepEqual(await store.claim(claimRequest('r2', 'ch_a', START + 2_999)), {
      claims: [],
      wakeAt: START + 3_000,
    });
    const due = await store.claim(claimRequest('r2', 'ch_a', START + 3_000));
    assert.deepEqual(claimedIds(due.claims), [eventId(2)]);
  });

  test('settle applies the update and ends the claim', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1)]);
    const c1 = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    const failed = outcome('queued', START + 100, 1, START + 5_000);
    const retried = await store.settle(ref(c1), failed);
    assert.ok(retried);
    assert.equal(retried.status, 'queued');
    assert.equal(retried.attemptCount, 1);
    assert.equal(retried.nextAttemptAt, START + 5_000);
    assert.deepEqual(retried.attempts, [failed.attempt]);
    assert.deepEqual(await store.getEvent(eventId(1)), retried);
    assert.equal(await store.settle(ref(c1), outcome('delivered', START, 2)), null, 'settled once');
    assert.equal(await store.release(ref(c1)), false);
    assert.deepEqual(await store.getEvent(eventId(1)), retried, 'a refused settle changes nothing');
    assert.deepEqual((await store.claim(claimRequest('r1', 'ch_a', START + 4_999))).claims, []);

    const c2 = only((await store.claim(claimRequest('r1', 'ch_a', START + 5_000))).claims);
    assert.ok(c2.epoch > c1.epoch);
    const success = {
      ...outcome('delivered', START + 5_100, 2),
      deliveredRoutes: ['app'],
    };
    const delivered = await store.settle(ref(c2), success);
    assert.ok(delivered);
    assert.equal(delivered.status, 'delivered');
    assert.equal(delivered.attemptCount, 2);
    assert.deepEqual(delivered.attempts, [failed.attempt, success.attempt]);
    assert.deepEqual(delivered.deliveredRoutes, ['app']);
    for (const now of [START + 5_000, START + 86_400_000]) {
      assert.deepEqual(await store.claim(claimRequest('r2', 'ch_a', now)), {
        claims: [],
        wakeAt: null,
      });
    }
    assert.deepEqual(ids(await listAll(store, { status: 'delivered' })), [eventId(1)]);
  });

  test('a replay makes a finished event claimable again, and ends a claim it has', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    const got = await store.claim(claimRequest('r1', 'ch_a', START));
    const [c1, c2] = got.claims.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(c1 && c2);
    const delivered = {
      ...outcome('delivered', START + 1, 1),
      deliveredRoutes: ['app'],
    };
    assert.ok(await store.settle(ref(c1), delivered));

    const replayed = await store.updateEvent(eventId(1), replay(1), {
      expect: ['delivered', 'failed', 'filtered'],
    });
    assert.equal(replayed.status, 'queued');
    assert.equal(replayed.replays, 1);
    assert.equal(replayed.attemptCount, 0);
    assert.deepEqual(replayed.deliveredRoutes, []);
    assert.deepEqual(replayed.attempts, [delivered.attempt], 'the log of attempts stays');
    const again = only((await store.claim(claimRequest('r2', 'ch_a', START + 2))).claims);
    assert.equal(again.event.id, eventId(1));
    assert.equal(again.event.replays, 1);
    assert.ok(again.epoch > c1.epoch);

    // Event 2 is claimed when it is replayed: the replay ends that claim.
    const replayed2 = await store.updateEvent(eventId(2), replay(1));
    assert.equal(replayed2.status, 'queued');
    assert.equal(await store.settle(ref(c2), outcome('delivered', START + 3, 1)), null);
    assert.equal(await store.release(ref(c2)), false);
    assert.deepEqual(await store.getEvent(eventId(2)), replayed2);
    const c2b = only((await store.claim(claimRequest('r2', 'ch_a', START + 4))).claims);
    assert.equal(c2b.event.id, eventId(2));
    assert.ok(c2b.epoch > c2.epoch);
    assert.equal(
      (await store.settle(ref(c2b), outcome('delivered', START + 5, 1)))?.status,
      'delivered',
    );
  });

  test('a lazy settle is visible at once, before its promise resolves', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2), payload(3)]);
    const got = await store.claim(claimRequest('r1', 'ch_a', START));
    const [c1, c2, c3] = got.claims.sort((a, b) => a.event.id.localeCompare(b.event.id));
    assert.ok(c1 && c2 && c3);

    let resolved = 0;
    const track = <T>(p: Promise<T>) => p.finally(() => resolved++);
    const s1 = track(store.settle(ref(c1), outcome('delivered', START + 1, 1), { lazy: true }));
    const s2 = track(store.settle(ref(c2), outcome('queued', START + 1, 1, 0), { lazy: true }));
    const s3 = track(
      store.settle(ref(c3), outcome('queued', START + 1, 1, START + 7_000), { lazy: true }),
    );
    // Read before awaiting the settles.
    const e1 = await store.getEvent(eventId(1));
    assert.equal(e1?.status, 'delivered');
    assert.equal(e1?.attemptCount, 1);
    const delivered = await store.listEvents({ status: 'delivered', limit: 10 });
    assert.deepEqual(ids(delivered.events), [eventId(1)]);
    assert.deepEqual(await store.countByStatus(), counts({ delivered: 1, queued: 2 }));
    t.diagnostic(`lazy settles resolved before the reads ended: ${resolved} of 3`);
    // A claim need not wait for them: it may find event 2 still claimed, never anything else.
    const early = await store.claim(claimRequest('r2', 'ch_a', START + 2));
    assert.ok(
      claimedIds(early.claims).every((id) => id === eventId(2)),
      claimedIds(early.claims).join(),
    );

    assert.equal((await s1)?.status, 'delivered');
    assert.ok(await s2, 'the settle of event 2 held');
    assert.equal((await s3)?.nextAttemptAt, START + 7_000);
    // Once they resolved, claims see them: only event 2 is due again.
    const claimed = await store.claim(claimRequest('r2', 'ch_a', START + 3));
    assert.deepEqual(claimedIds([...early.claims, ...claimed.claims]), [eventId(2)]);
    assert.equal(claimed.wakeAt, START + 7_000);
    assert.equal(await store.settle(ref(c1), outcome('failed', START + 3, 2)), null);
  });

  test('the attempts log keeps the last 20 attempts', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1)]);
    for (let n = 1; n <= 25; n++) {
      const at = START + n;
      const claim = only((await store.claim(claimRequest('r1', 'ch_a', at))).claims);
      const done = n === 25 ? outcome('failed', at, n) : outcome('queued', at, n, at);
      assert.ok(await store.settle(ref(claim), done));
    }
    const event = await mustGet(store, eventId(1));
    assert.equal(event.attemptCount, 25);
    assert.deepEqual(
      event.attempts.map((a) => a.at),
      Array.from({ length: 20 }, (_, i) => START + 6 + i),
      'the 20 newest, oldest first',
    );
  });

  test('claims of different owners at once never share an event', async (t) => {
    const { store } = await fresh(t, backend);
    const n = 60;
    await appendAll(
      store,
      Array.from({ length: n }, (_, i) => payload(i + 1)),
    );
    const results = await Promise.all(
      ['r1', 'r2', 'r3', 'r4'].map((owner) =>
        store.claim(claimRequest(owner, 'ch_a', START, { limit: 20 })),
      ),
    );
    const all = results.flatMap((r) => ids(r.claims.map((c) => c.event)));
    assert.equal(all.length, n, `${n} claimed in all`);
    assert.equal(new Set(all).size, n, 'each event once');
    assert.equal((await store.countByStatus()).delivering, n);
  });
}
