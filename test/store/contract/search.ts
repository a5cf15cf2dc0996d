/**
 * Time ranges of listings (by receivedAt) and searches in events' requests (id, header values,
 * body text), with their budget and cursor.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventIdGenerator } from '../../../server/ids.ts';
import type { EventPayload, EventSearch, Store } from '../../../server/store/types.ts';
import {
  RECEIVED,
  START,
  appendAll,
  claimRequest,
  eventId,
  fresh,
  ids,
  only,
  outcome,
  payload,
  ref,
  rejectedPayload,
  type Backend,
} from './support.ts';

const MINUTE = 60_000;

/** Every page of a search, and how many events each examined. */
async function searchAll(
  store: Store,
  search: Omit<EventSearch, 'before'>,
): Promise<{ ids: string[]; examined: number[] }> {
  const out: string[] = [];
  const examined: number[] = [];
  let before: string | undefined;
  for (let page = 0; page < 1_000; page++) {
    const result = await store.searchEvents({ ...search, ...(before ? { before } : {}) });
    assert.ok(result.events.length <= search.limit, 'a page holds at most `limit` events');
    assert.ok(result.examined <= search.maxExamined, 'at most `maxExamined` examined');
    out.push(...ids(result.events));
    examined.push(result.examined);
    if (result.next === null) return { ids: out, examined };
    before = result.next;
  }
  assert.fail('searchEvents never reached the end');
}

export function searchTests(backend: Backend): void {
  test('listEvents: a time range [since, until) on receivedAt, with the other filters', async (t) => {
    const { store } = await fresh(t, backend);
    // Real event ids (ULIDs of their arrival): event k arrives at minute k.
    let clock = RECEIVED;
    const next = eventIdGenerator(() => clock);
    const at = (k: number) => RECEIVED + k * MINUTE;
    const payloads: EventPayload[] = [];
    for (let k = 0; k < 6; k++) {
      clock = at(k);
      payloads.push({ ...payload(k + 1, { receivedAt: at(k) }), id: next() });
    }
    // Its id was made a few seconds after it was received (the request's body was slow).
    clock = at(6) + 5_000;
    payloads.push({ ...payload(7, { receivedAt: at(6) - 1 }), id: next() });
    clock = at(7);
    payloads.push({ ...rejectedPayload(8, { receivedAt: at(7), channelId: 'ch_b' }), id: next() });
    await appendAll(store, payloads);
    const id = (k: number) => payloads[k]!.id;
    // Claimed oldest first: minute 1 delivered, minute 0 delivering.
    const got = await store.claim(claimRequest('r1', 'ch_a', START, { limit: 2 }));
    const claim = got.claims.find((c) => c.event.id === id(1));
    assert.ok(claim);
    assert.ok(await store.settle(ref(claim), outcome('delivered', START, 1)));

    const list = async (filter: Record<string, unknown>, limit = 100) => {
      const out: string[] = [];
      let before: string | undefined;
      for (let page = 0; page < 100; page++) {
        const result = await store.listEvents({ limit, ...filter, ...(before ? { before } : {}) });
        out.push(...ids(result.events));
        if (result.next === null) return out;
        before = result.next;
      }
      assert.fail('no end');
    };
    const newestFirst = (...k: number[]) => k.map(id);
    assert.deepEqual(await list({ since: at(1), until: at(4) }), newestFirst(3, 2, 1));
    assert.deepEqual(await list({ since: at(1), until: at(4) }, 1), newestFirst(3, 2, 1));
    assert.deepEqual(await list({ since: at(4) }), newestFirst(7, 6, 5, 4));
    assert.deepEqual(await list({ until: at(2) }), newestFirst(1, 0));
    assert.deepEqual(await list({ until: at(2) + 1 }), newestFirst(2, 1, 0));
    assert.deepEqual(await list({ since: at(6) - 1, until: at(6) }), newestFirst(6));
    assert.deepEqual(await list({ since: at(6), until: at(7) }), []);
    assert.deepEqual(await list({ since: at(0), until: at(0) }), []);
    const FAR = 2 ** 48 + 1_000; // beyond the 48 bits of an id's time (year 10889)
    assert.deepEqual(await list({ until: FAR }), newestFirst(7, 6, 5, 4, 3, 2, 1, 0));
    assert.deepEqual(await list({ since: FAR }), []);
    assert.deepEqual(await list({ since: -FAR, until: at(1) }), newestFirst(0));
    assert.deepEqual(await list({ since: at(1), status: 'delivered' }), newestFirst(1));
    assert.deepEqual(await list({ since: at(1), status: 'delivering' }), []);
    assert.deepEqual(await list({ until: at(2), status: 'delivering' }), newestFirst(0));
    assert.deepEqual(await list({ until: at(0) + 1, status: 'delivering' }), newestFirst(0));
    assert.deepEqual(await list({ since: at(0) + 1, status: 'delivering' }), []);
    assert.deepEqual(await list({ since: at(3), status: 'queued' }), newestFirst(6, 5, 4, 3));
    assert.deepEqual(await list({ since: at(5), channelId: 'ch_b' }), newestFirst(7));
    assert.deepEqual(await list({ since: at(5), channelId: 'ch_a' }), newestFirst(6, 5));
    assert.deepEqual(
      await list({ until: at(7), channelId: 'ch_b', status: 'rejected' }),
      [],
      'until is exclusive',
    );
    assert.deepEqual(await list({ since: at(2), before: id(4) }), newestFirst(3, 2));

    // A search looks only at the events of the range.
    const found = await store.searchEvents({
      text: '{"n":',
      since: at(1),
      until: at(4),
      limit: 100,
      maxExamined: 100,
    });
    assert.deepEqual(ids(found.events), newestFirst(3, 2, 1));
    assert.equal(found.examined, 3);
    assert.equal(found.next, null);
  });

  test('searchEvents: header values and body text, case-insensitive; an id exactly', async (t) => {
    const { store } = await fresh(t, backend);
    const withRequest = (
      p: EventPayload,
      headers: [string, string][],
      body: string,
    ): EventPayload => ({ ...p, headers, body: Buffer.from(body) });
    const payloads = [
      withRequest(payload(1), [['Content-Type', 'text/plain']], 'a body with the NeEdLe inside'),
      withRequest(payload(2), [['X-Token', 'abc-NEEDLE-def']], '{}'),
      withRequest(payload(3), [['X-Needle', 'nothing']], 'no match here'),
      withRequest(payload(4, { channelId: 'ch_b' }), [], 'été comme hiver, needle'),
      withRequest(payload(5), [['X-Other', 'x']], 'plain'),
      { ...rejectedPayload(6), headers: [['User-Agent', 'needle-bot']] as [string, string][] },
    ];
    await appendAll(store, payloads);
    const b = only((await store.claim(claimRequest('r1', 'ch_b', START, { limit: 1 }))).claims);
    assert.ok(await store.settle(ref(b), outcome('failed', START, 1)));

    const search = async (text: string, more: Partial<EventSearch> = {}) =>
      (await searchAll(store, { text, limit: 100, maxExamined: 5_000, ...more })).ids;
    const newestFirst = (...n: number[]) => n.map(eventId);
    assert.deepEqual(await search('needle'), newestFirst(6, 4, 2, 1), 'a header name is no match');
    assert.deepEqual(await search('NEEDLE'), newestFirst(6, 4, 2, 1));
    assert.deepEqual(await search('ÉTÉ'), newestFirst(4), 'the body is read as UTF-8');
    assert.deepEqual(await search('needle', { channelId: 'ch_a' }), newestFirst(6, 2, 1));
    assert.deepEqual(await search('needle', { status: 'failed' }), newestFirst(4));
    assert.deepEqual(await search('needle', { status: 'queued' }), newestFirst(2, 1));
    assert.deepEqual(await search('needle', { limit: 1 }), newestFirst(6, 4, 2, 1), 'by pages');
    assert.deepEqual(await search('absent'), []);
    assert.deepEqual(await search(eventId(3)), newestFirst(3), 'an event id');
    assert.deepEqual(await search(eventId(3), { channelId: 'ch_b' }), []);
    assert.deepEqual(await search(eventId(3), { status: 'failed' }), []);

    // Pages of a search: `next` goes on after the last match.
    const first = await store.searchEvents({ text: 'needle', limit: 2, maxExamined: 5_000 });
    assert.deepEqual(ids(first.events), newestFirst(6, 4));
    assert.equal(first.next, eventId(4));
    assert.equal(first.examined, 3);
    const second = await store.searchEvents({
      text: 'needle',
      limit: 2,
      maxExamined: 5_000,
      before: eventId(4),
    });
    assert.deepEqual(ids(second.events), newestFirst(2, 1));
    assert.equal(second.next, null, 'the last event matched: nothing left');
    assert.equal(second.examined, 3);
  });

  test('searchEvents: at most maxExamined events, then a cursor to go on', async (t) => {
    const { store } = await fresh(t, backend);
    const payloads: EventPayload[] = [];
    for (let i = 1; i <= 30; i++) {
      payloads.push({ ...payload(i), body: Buffer.from(i % 10 === 5 ? 'hit' : 'miss') });
    }
    await appendAll(store, payloads);
    const page = await store.searchEvents({ text: 'hit', limit: 50, maxExamined: 5 });
    assert.deepEqual(ids(page.events), [], 'events 30 to 26: none matches');
    assert.equal(page.examined, 5);
    assert.equal(page.next, eventId(26), 'the cursor is the last event examined');
    const all = await searchAll(store, { text: 'HIT', limit: 50, maxExamined: 7 });
    assert.deepEqual(all.ids, [25, 15, 5].map(eventId));
    assert.deepEqual(all.examined, [7, 7, 7, 7, 2], 'every event examined once');
    // A budget in bytes of bodies too: 'miss' is 4 bytes, 'hit' 3.
    const bytes = await store.searchEvents({
      text: 'hit',
      limit: 50,
      maxExamined: 100,
      maxBytes: 10,
    });
    assert.equal(bytes.examined, 3, 'events 30, 29 and 28 make 12 bytes');
    assert.deepEqual(bytes.events, []);
    assert.equal(bytes.next, eventId(28));
    const byBytes = await searchAll(store, {
      text: 'hit',
      limit: 50,
      maxExamined: 100,
      maxBytes: 10,
    });
    assert.deepEqual(byBytes.ids, [25, 15, 5].map(eventId));
    assert.equal(
      byBytes.examined.reduce((a, b) => a + b, 0),
      30,
      'every event examined once',
    );
    const one = await searchAll(store, { text: 'hit', limit: 1, maxExamined: 100 });
    assert.deepEqual(one.ids, [25, 15, 5].map(eventId));
    assert.deepEqual(one.examined, [6, 10, 10, 4]);
  });
}
