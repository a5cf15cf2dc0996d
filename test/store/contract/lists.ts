/**
 * Lists (newest first, filters, pages while changes are under way, cursors) and counts, with
 * claimed events shown as `delivering`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EventPayload } from '../../../server/store/types.ts';
import {
  ALL_STATUSES,
  START,
  appendAll,
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
  type Backend,
} from './support.ts';

export function listTests(backend: Backend): void {
  test('listEvents: newest first, by channel, by status, by both', async (t) => {
    const { store } = await fresh(t, backend);
    // 1..4 on ch_a, 5..7 on ch_b, 8 refused on ch_a.
    const payloads: EventPayload[] = [
      payload(1),
      payload(2),
      payload(3),
      payload(4),
      payload(5, { channelId: 'ch_b' }),
      payload(6, { channelId: 'ch_b' }),
      payload(7, { channelId: 'ch_b' }),
      rejectedPayload(8),
    ];
    await appendAll(store, payloads);
    // ch_a: 1 delivered, 2 delivering; ch_b: 5 failed.
    const a = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 2 }));
    assert.deepEqual(ids(a.claims.map((c) => c.event)).sort(), [eventId(1), eventId(2)]);
    const one = a.claims.find((c) => c.event.id === eventId(1));
    assert.ok(one);
    assert.ok(await store.settle(ref(one), outcome('delivered', START + 1, 1)));
    const b = only((await store.claim(claimRequest('r1', 'ch_b', START, { limit: 1 }))).claims);
    assert.equal(b.event.id, eventId(5));
    assert.ok(await store.settle(ref(b), outcome('failed', START + 2, 1)));

    const newestFirst = (...n: number[]) => n.map(eventId);
    const list = async (filter: Parameters<typeof listAll>[1]) => ids(await listAll(store, filter));
    assert.deepEqual(await list({}), newestFirst(8, 7, 6, 5, 4, 3, 2, 1));
    assert.deepEqual(await list({ channelId: 'ch_a' }), newestFirst(8, 4, 3, 2, 1));
    assert.deepEqual(await list({ channelId: 'ch_b' }), newestFirst(7, 6, 5));
    assert.deepEqual(await list({ channelId: 'ch_none' }), []);
    assert.deepEqual(await list({ status: 'queued' }), newestFirst(7, 6, 4, 3));
    assert.deepEqual(await list({ status: 'delivering' }), newestFirst(2));
    assert.deepEqual(await list({ status: 'delivered' }), newestFirst(1));
    assert.deepEqual(await list({ status: 'failed' }), newestFirst(5));
    assert.deepEqual(await list({ status: 'rejected' }), newestFirst(8));
    assert.deepEqual(await list({ status: 'filtered' }), []);
    assert.deepEqual(await list({ channelId: 'ch_a', status: 'queued' }), newestFirst(4, 3));
    assert.deepEqual(await list({ channelId: 'ch_b', status: 'queued' }), newestFirst(7, 6));
    assert.deepEqual(await list({ channelId: 'ch_b', status: 'delivered' }), []);
    assert.deepEqual(await list({ channelId: 'ch_a', status: 'rejected' }), newestFirst(8));

    // What a list shows is what getEvent shows.
    for (const event of await listAll(store, {})) {
      assert.deepEqual(event, await store.getEvent(event.id));
    }
    const page = await store.listEvents({ limit: 3 });
    assert.deepEqual(ids(page.events), newestFirst(8, 7, 6));
    assert.notEqual(page.next, null);
    const rest = await store.listEvents({ limit: 3, before: eventId(6) });
    assert.deepEqual(ids(rest.events), newestFirst(5, 4, 3), 'an event id is a cursor');
  });

  test('listEvents pages: every event exactly once, newest first', async (t) => {
    const { store } = await fresh(t, backend);
    const payloads = Array.from({ length: 23 }, (_, i) =>
      payload(i + 1, { channelId: i % 3 === 0 ? 'ch_b' : 'ch_a' }),
    );
    await appendAll(store, payloads);
    const newestFirst = ids(payloads).reverse();
    for (const limit of [1, 5, 22, 23, 24]) {
      assert.deepEqual(ids(await listAll(store, {}, limit)), newestFirst, `pages of ${limit}`);
    }
    const chA = ids(payloads.filter((p) => p.channelId === 'ch_a')).reverse();
    assert.deepEqual(ids(await listAll(store, { channelId: 'ch_a' }, 4)), chA);
    const queuedB = ids(payloads.filter((p) => p.channelId === 'ch_b')).reverse();
    assert.deepEqual(
      ids(await listAll(store, { channelId: 'ch_b', status: 'queued' }, 2)),
      queuedB,
    );
  });

  test('listEvents pages while changes are under way: every event exactly once', async (t) => {
    const { store } = await fresh(t, backend);
    const total = 30;
    await appendAll(
      store,
      Array.from({ length: total }, (_, i) => payload(i + 1)),
    );
    let nextNew = 1_000;
    let now = START;
    const lazy: Promise<unknown>[] = [];
    /** Between pages: new events arrive, older ones are claimed, settled (some lazily), released. */
    const churn = async () => {
      await store.appendEvent(payload(nextNew++));
      now += 1_000;
      const got = await store.claim(claimRequest('r1', 'ch_a', now, { limit: 3 }));
      const [c1, c2, c3] = got.claims;
      if (c1) assert.ok(await store.settle(ref(c1), outcome('delivered', now, 1)));
      if (c2)
        lazy.push(store.settle(ref(c2), outcome('queued', now, 1, now + 500), { lazy: true }));
      if (c3) assert.equal(await store.release(ref(c3)), true);
    };

    const seen: string[] = [];
    let before: string | undefined;
    for (let page = 0; ; page++) {
      assert.ok(page < 100, 'the pages end');
      const result = await store.listEvents({
        channelId: 'ch_a',
        limit: 4,
        ...(before ? { before } : {}),
      });
      seen.push(...ids(result.events));
      if (result.next === null) break;
      before = result.next;
      await churn();
    }
    await Promise.all(lazy);
    const expected = Array.from({ length: total }, (_, i) => eventId(total - i));
    assert.deepEqual(seen, expected, 'each event of the first list once, newest first');

    // By status, while events leave and re-enter `queued` (claimed, then released a page
    // later): never one twice, each listed one queued, and every event that stayed queued
    // throughout is listed.
    const queuedBefore = ids(await listAll(store, { channelId: 'ch_a', status: 'queued' }));
    assert.ok(queuedBefore.length >= 10, 'enough queued events to page through');
    const touched = new Set<string>();
    let held: ReturnType<typeof ref>[] = [];
    const byStatus: string[] = [];
    before = undefined;
    for (let page = 0; ; page++) {
      assert.ok(page < 100, 'the pages end');
      const result = await store.listEvents({
        channelId: 'ch_a',
        status: 'queued',
        limit: 3,
        ...(before ? { before } : {}),
      });
      for (const event of result.events) assert.equal(event.status, 'queued');
      byStatus.push(...ids(result.events));
      if (result.next === null) break;
      before = result.next;
      now += 1_000;
      for (const claim of held) assert.equal(await store.release(claim), true);
      const got = await store.claim(claimRequest('r2', 'ch_a', now, { limit: 2 }));
      held = got.claims.map(ref);
      for (const claim of got.claims) touched.add(claim.event.id);
    }
    assert.ok(touched.size > 0, 'events changed status while the pages were read');
    assert.equal(new Set(byStatus).size, byStatus.length, 'no event listed twice');
    const untouched = queuedBefore.filter((id) => !touched.has(id));
    assert.deepEqual(
      byStatus.filter((id) => untouched.includes(id)),
      untouched,
      'every event that stayed queued is listed, newest first',
    );
  });

  test('listEvents: a cursor that names no event is ERR_BAD_REQUEST', async (t) => {
    const { store } = await fresh(t, backend);
    await appendAll(store, [payload(1), payload(2)]);
    await rejectsWithCode(
      store.listEvents({ limit: 10, before: eventId(999) }),
      'ERR_BAD_REQUEST',
      400,
    );
    await rejectsWithCode(
      store.listEvents({ channelId: 'ch_a', status: 'queued', limit: 10, before: 'evt_nope' }),
      'ERR_BAD_REQUEST',
      400,
    );
  });

  test('claimed events are delivering in getEvent, lists and countByStatus', async (t) => {
    const { store } = await fresh(t, backend);
    assert.deepEqual(await store.countByStatus(), counts({}));
    await appendAll(store, [
      payload(1),
      payload(2),
      payload(3),
      payload(4, { channelId: 'ch_b' }),
      rejectedPayload(5),
    ]);
    assert.deepEqual(await store.countByStatus(), counts({ queued: 4, rejected: 1 }));
    const got = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 2 }));
    assert.deepEqual(ids(got.claims.map((c) => c.event)).sort(), [eventId(1), eventId(2)]);
    for (const claim of got.claims) assert.equal(claim.event.status, 'delivering');
    assert.equal((await mustGet(store, eventId(1))).status, 'delivering');
    assert.equal((await mustGet(store, eventId(3))).status, 'queued');
    assert.deepEqual(ids(await listAll(store, { status: 'delivering' })), [eventId(2), eventId(1)]);
    assert.deepEqual(ids(await listAll(store, { status: 'queued' })), [eventId(4), eventId(3)]);
    assert.deepEqual(ids(await listAll(store, { channelId: 'ch_a', status: 'delivering' })), [
      eventId(2),
      eventId(1),
    ]);
    assert.deepEqual(
      await store.countByStatus(),
      counts({ queued: 2, delivering: 2, rejected: 1 }),
    );
    const keys = Object.keys(await store.countByStatus()).sort();
    assert.deepEqual(keys, [...ALL_STATUSES].sort(), 'every status is counted');
  });
}
