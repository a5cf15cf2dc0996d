/**
 * Events: append and read back, unknown ids, copies (rule 7), updateEvent's `expect`, replay
 * protection and retention.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_REJECTED_PER_CHANNEL, type EventSummary } from '../../../server/store/types.ts';
import {
  START,
  appendAll,
  attempt,
  assertSamePayload,
  claimRequest,
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
  rejectsWithCode,
  replay,
  skip,
  type Backend,
} from './support.ts';

export function eventTests(backend: Backend): void {
  test('appendEvent, getEvent and readPayload give back what was appended', async (t) => {
    const { store } = await fresh(t, backend);
    const plain = payload(1);
    const keyed = payload(2, { channelId: 'ch_b', orderKey: 'repo/one', dedupKey: 'd1' });
    const empty = { ...payload(3), body: Buffer.alloc(0) };
    const refused = rejectedPayload(4);
    const all = [plain, keyed, empty, refused];
    const appended = await appendAll(store, all);

    const first = appended[0];
    const expected: Omit<EventSummary, 'nextAttemptAt' | 'orderKey'> = {
      id: plain.id,
      channelId: 'ch_a',
      status: 'queued',
      receivedAt: plain.receivedAt,
      method: 'POST',
      path: '/push/1',
      query: '',
      size: plain.body.length,
      attemptCount: 0,
      attempts: [],
      reason: null,
      deliveredRoutes: [],
      replays: 0,
    };
    assert.ok(first);
    const { nextAttemptAt, orderKey, ...rest } = first;
    assert.deepEqual(rest, expected);
    assert.ok(nextAttemptAt <= START, 'a new event is due at once');
    assert.equal(typeof orderKey, 'string');

    assert.equal(appended[1]?.orderKey, 'repo/one');
    assert.equal(appended[1]?.query, 'n=2&x=%ZZ');
    assert.equal(appended[2]?.size, 0);
    assert.equal(appended[3]?.status, 'rejected');
    assert.equal(appended[3]?.reason, 'signature mismatch');

    for (const [i, p] of all.entries()) {
      assert.deepEqual(await store.getEvent(p.id), appended[i], `getEvent(${p.id})`);
      assertSamePayload(await store.readPayload(p.id), p);
    }
  });

  test('unknown ids: getEvent undefined, readPayload and updateEvent ERR_NOT_FOUND', async (t) => {
    const { store } = await fresh(t, backend);
    await store.appendEvent(payload(1));
    const missing = eventId(999);
    assert.equal(await store.getEvent(missing), undefined);
    await rejectsWithCode(store.readPayload(missing), 'ERR_NOT_FOUND', 404);
    await rejectsWithCode(store.updateEvent(missing, replay(1)), 'ERR_NOT_FOUND', 404);
    await rejectsWithCode(
      store.updateEvent(missing, replay(1), { expect: ['failed'] }),
      'ERR_NOT_FOUND',
      404,
    );
    assert.equal(await store.getEvent(missing), undefined, 'an update creates no event');
  });

  test('reads return copies (rule 7)', async (t) => {
    const { store } = await fresh(t, backend);
    const p = payload(1);
    const appended = await store.appendEvent(p);
    const snapshot = structuredClone(appended);
    const scribble = (e: EventSummary) => {
      e.status = 'failed';
      e.attempts.push(attempt(START));
      e.deliveredRoutes.push('r');
      e.attemptCount = 99;
    };
    scribble(appended);
    assert.deepEqual(await store.getEvent(p.id), snapshot, 'appendEvent returned a copy');
    const got = await mustGet(store, p.id);
    scribble(got);
    assert.deepEqual(await store.getEvent(p.id), snapshot, 'getEvent returned a copy');
    const listed = (await store.listEvents({ limit: 10 })).events[0];
    assert.ok(listed);
    scribble(listed);
    assert.deepEqual(await store.getEvent(p.id), snapshot, 'listEvents returned copies');

    const read = await store.readPayload(p.id);
    read.body[0] = 0x21;
    read.headers.push(['X-Added', '1']);
    const first = read.headers[0];
    assert.ok(first);
    first[1] = 'text/plain';
    read.path = '/changed';
    assertSamePayload(await store.readPayload(p.id), p);

    const claim = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    const claimRef = ref(claim);
    const claimed = structuredClone(await mustGet(store, p.id));
    scribble(claim.event);
    claim.event.id = eventId(2);
    assert.deepEqual(await store.getEvent(p.id), claimed, 'claim returned a copy');
    const settled = await store.settle(claimRef, outcome('queued', START, 1, START + 10));
    assert.ok(settled);
    const after = structuredClone(settled);
    scribble(settled);
    assert.deepEqual(await store.getEvent(p.id), after, 'settle returned a copy');
    const counted = await store.countByStatus();
    counted.queued = 42;
    assert.equal((await store.countByStatus()).queued, 1);
  });

  test('updateEvent: expect refuses with ERR_CONFLICT and changes nothing', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    const before = await mustGet(store, eventId(1));
    await rejectsWithCode(
      store.updateEvent(eventId(1), replay(1), { expect: ['delivered', 'failed'] }),
      'ERR_CONFLICT',
      409,
    );
    assert.deepEqual(await store.getEvent(eventId(1)), before);

    // A claimed event is `delivering`: a skip expecting `queued` is refused.
    const claim = only((await store.claim(claimRequest('r1', 'ch_a', START, { limit: 1 }))).claims);
    const claimed = await mustGet(store, eventId(1));
    await rejectsWithCode(
      store.updateEvent(eventId(1), skip(START, 0), { expect: ['queued'] }),
      'ERR_CONFLICT',
      409,
    );
    assert.deepEqual(await store.getEvent(eventId(1)), claimed);
    assert.ok(await store.settle(ref(claim), outcome('delivered', START, 1)), 'the claim holds');

    // With a status that matches, the update applies.
    const skipped = await store.updateEvent(eventId(2), skip(START + 5, 0), { expect: ['queued'] });
    assert.equal(skipped.status, 'failed');
    assert.equal(skipped.attempts.at(-1)?.outcome, 'skipped');
    assert.deepEqual(await store.getEvent(eventId(2)), skipped);
    const replayed = await store.updateEvent(eventId(2), replay(1), { expect: ['failed'] });
    assert.equal(replayed.status, 'queued');
    assert.equal(replayed.replays, 1);
    assert.equal(replayed.attemptCount, 0);
    assert.equal(replayed.attempts.at(-1)?.outcome, 'skipped', 'the log of attempts stays');
  });

  test('findByDedupKey: by channel and key, received at or after `since`', async (t) => {
    const { store } = await fresh(t, backend);
    const p = payload(1, { dedupKey: 'sig-1' });
    await appendAll(store, [p, payload(2, { channelId: 'ch_b', dedupKey: 'sig-2' }), payload(3)]);
    assert.equal(await store.findByDedupKey('ch_a', 'sig-1', p.receivedAt - 86_400_000), p.id);
    assert.equal(await store.findByDedupKey('ch_a', 'sig-1', p.receivedAt), p.id);
    assert.equal(await store.findByDedupKey('ch_a', 'sig-1', p.receivedAt + 1), undefined);
    assert.equal(await store.findByDedupKey('ch_b', 'sig-1', 0), undefined, 'per channel');
    assert.equal(await store.findByDedupKey('ch_a', 'sig-2', 0), undefined, 'per channel');
    assert.equal(await store.findByDedupKey('ch_b', 'sig-2', 0), eventId(2));
    assert.equal(await store.findByDedupKey('ch_a', 'sig-3', 0), undefined);
  });

  test('removeFinishedBefore removes only finished events received before the cutoff', async (t) => {
    const { store } = await fresh(t, backend);
    const cutoff = START - 1_800_000;
    // Before the cutoff: 1 delivered, 2 failed, 3 filtered, 4 rejected, 5 queued (released),
    // 6 delivering, 7 queued waiting for a retry. At the cutoff: 8 delivered. After it: 9.
    const payloads = [
      payload(1, { receivedAt: cutoff - 90 }),
      payload(2, { receivedAt: cutoff - 80 }),
      payload(3, { receivedAt: cutoff - 70 }),
      rejectedPayload(4, { receivedAt: cutoff - 60 }),
      payload(5, { receivedAt: cutoff - 50 }),
      payload(6, { receivedAt: cutoff - 40 }),
      payload(7, { receivedAt: cutoff - 30 }),
      payload(8, { receivedAt: cutoff }),
      payload(9, { receivedAt: cutoff + 10 }),
    ];
    await appendAll(store, payloads);
    const got = await store.claim(claimRequest('r1', 'ch_a', START));
    assert.equal(got.claims.length, 8, 'every event but the rejected one is claimed');
    const claimOf = (i: number) => {
      const claim = got.claims.find((c) => c.event.id === eventId(i));
      assert.ok(claim, `event ${i} claimed`);
      return ref(claim);
    };
    assert.ok(await store.settle(claimOf(1), outcome('delivered', START, 1)));
    assert.ok(await store.settle(claimOf(2), outcome('failed', START, 1)));
    assert.ok(await store.settle(claimOf(3), outcome('filtered', START, 1)));
    assert.equal(await store.release(claimOf(5)), true);
    assert.ok(await store.settle(claimOf(7), outcome('queued', START, 1, START + 60_000)));
    assert.ok(await store.settle(claimOf(8), outcome('delivered', START, 1)));
    assert.ok(await store.settle(claimOf(9), outcome('delivered', START, 1)));
    const kept = payloads.slice(4);
    const keptBefore = await Promise.all(kept.map((p) => mustGet(store, p.id)));

    assert.equal(await store.removeFinishedBefore(cutoff), 4);
    for (const p of payloads.slice(0, 4)) {
      assert.equal(await store.getEvent(p.id), undefined, `${p.id} removed`);
      await rejectsWithCode(store.readPayload(p.id), 'ERR_NOT_FOUND', 404);
    }
    assert.deepEqual(await Promise.all(kept.map((p) => store.getEvent(p.id))), keptBefore);
    assert.deepEqual(ids(await listAll(store, {})), ids(kept).reverse());
    assert.deepEqual(
      await store.countByStatus(),
      counts({ queued: 2, delivering: 1, delivered: 2 }),
    );
    for (const p of kept) assertSamePayload(await store.readPayload(p.id), p);
    assert.equal(await store.removeFinishedBefore(cutoff), 0, 'nothing left to remove');

    // The claim on event 6 still holds.
    assert.ok(await store.settle(claimOf(6), outcome('delivered', START, 1)));
  });

  test('refused requests: at most MAX_REJECTED_PER_CHANNEL per channel, the oldest go first', async (t) => {
    const { store, reopen } = await fresh(t, backend);
    const overflow = MAX_REJECTED_PER_CHANNEL + 3;
    await appendAll(store, [payload(1)]);
    await Promise.all(
      Array.from({ length: overflow }, (_, i) => store.appendEvent(rejectedPayload(i + 2))),
    );
    await store.appendEvent(rejectedPayload(overflow + 2, { channelId: 'ch_b' }));
    const check = async (s: typeof store) => {
      const n = await s.countByStatus();
      assert.equal(n.rejected, MAX_REJECTED_PER_CHANNEL + 1, "the bound, plus ch_b's one");
      assert.equal(n.queued, 1, 'accepted events are not touched');
      for (const i of [2, 3, 4]) assert.equal(await s.getEvent(eventId(i)), undefined);
      assert.ok(await s.getEvent(eventId(5)), 'the oldest kept');
      assert.ok(await s.getEvent(eventId(overflow + 2)), 'another channel keeps its own');
      const listed = await listAll(s, { channelId: 'ch_a', status: 'rejected' });
      assert.equal(listed.length, MAX_REJECTED_PER_CHANNEL);
    };
    await check(store);
    await check(await reopen());
  });

  test('health: available while open', async (t) => {
    const { store } = await fresh(t, backend);
    assert.equal(await store.health(), 'available');
  });
}
