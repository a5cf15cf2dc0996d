/**
 * Rule 8: rate-limit buckets, the apps' answers to sync events and presence are one for every
 * relay of a store; the feed reports `response` and `presence` changes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FeedLog, START, eventId, fresh, payload, waitFor, type Backend } from './support.ts';

export function sharedTests(backend: Backend): void {
  test('shared: a token bucket holds burst tokens, refills at its rate, and says how long to wait', async (t) => {
    const { store } = await fresh(t, backend);
    const limit = { perSecond: 2, burst: 3 };
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) waits.push(await store.takeToken('ingress:a', limit, START));
    assert.deepEqual(waits, [0, 0, 0, 500]);
    // A refused take takes nothing: half a second later exactly one token is back.
    assert.equal(await store.takeToken('ingress:a', limit, START + 500), 0);
    assert.equal(await store.takeToken('ingress:a', limit, START + 500), 500);
    // Another key is another bucket.
    assert.equal(await store.takeToken('ingress:b', limit, START + 500), 0);
    // Idle long enough, the bucket is full again, never fuller than burst.
    const later = START + 60_000;
    const after: number[] = [];
    for (let i = 0; i < 4; i++) after.push(await store.takeToken('ingress:a', limit, later));
    assert.deepEqual(after, [0, 0, 0, 500]);
  });

  test('shared: an answer published is read back until its deadline and reported on the feed', async (t) => {
    const { store } = await fresh(t, backend);
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    const id = eventId(1);
    await store.appendEvent(payload(1));
    const now = Date.now();
    assert.equal(await store.readResponse(id, now), undefined);
    const body = Buffer.from([0, 1, 2, 255]);
    await store.publishResponse(
      {
        eventId: id,
        status: 201,
        headers: [
          ['content-type', 'text/xml'],
          ['x-a', '1'],
        ],
        body,
      },
      now + 10_000,
    );
    await waitFor('the response change', () =>
      feed.changes.some((c) => c.type === 'response' && c.eventId === id),
    );
    const read = await store.readResponse(id, now);
    assert.deepEqual(read, {
      eventId: id,
      status: 201,
      headers: [
        ['content-type', 'text/xml'],
        ['x-a', '1'],
      ],
      body,
    });
    read!.body[0] = 9; // a copy
    assert.deepEqual((await store.readResponse(id, now))?.body, body);
    assert.equal(await store.readResponse(id, now + 10_001), undefined, 'past its deadline');
  });

  test('shared: presence is reported when a relay’s set changes, read while valid, withdrawn', async (t) => {
    const { store } = await fresh(t, backend);
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    await store.putPresence('r1', ['ag_b', 'ag_a'], START + 15_000);
    await waitFor('a presence change', () => feed.changes.some((c) => c.type === 'presence'));
    assert.deepEqual(await store.readPresence(START), [
      { owner: 'r1', agents: ['ag_a', 'ag_b'], until: START + 15_000 },
    ]);
    feed.clear();
    // Said again, unchanged: valid longer, nothing reported.
    await store.putPresence('r1', ['ag_a', 'ag_b'], START + 30_000);
    await store.putPresence('r2', ['ag_c'], START + 5_000);
    await waitFor('r2 reported', () => feed.changes.some((c) => c.type === 'presence'));
    const seen = await store.readPresence(START + 10_000);
    assert.deepEqual(seen, [{ owner: 'r1', agents: ['ag_a', 'ag_b'], until: START + 30_000 }]);
    feed.clear();
    await store.putPresence('r1', [], START + 30_000);
    await waitFor('r1 withdrawn', () => feed.changes.some((c) => c.type === 'presence'));
    assert.deepEqual(await store.readPresence(START), [
      { owner: 'r2', agents: ['ag_c'], until: START + 5_000 },
    ]);
  });
}
