/**
 * Per-minute statistics (Store.minuteStats): kept as events are appended and settled, in the
 * same writes, durable, visible at once (lazy settles too), forgotten by retention.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LATENCY_BUCKETS, minuteOf } from '../../../server/store/minute-stats.ts';
import type { MinuteStats, Store } from '../../../server/store/types.ts';
import {
  RECEIVED,
  START,
  appendAll,
  claimRequest,
  eventId,
  fresh,
  outcome,
  payload,
  ref,
  rejectedPayload,
  replay,
  type Backend,
} from './support.ts';

/** A minute start, before START. */
const T = minuteOf(RECEIVED);
/** `attempt()` lasts this long: an outcome "at" X ends at X + 12. */
const DURATION = 12;

function minute(at: number, fields: Partial<Omit<MinuteStats, 'minute'>>, hist: number[][] = []) {
  const latency = new Array<number>(LATENCY_BUCKETS).fill(0);
  for (const [bucket, n] of hist) latency[bucket!] = n!;
  return { minute: at, received: 0, delivered: 0, failed: 0, ...fields, latency };
}

/** Claims the one pending event of ch_a with id `id` and settles it. */
async function deliver(
  store: Store,
  id: string,
  status: 'delivered' | 'failed' | 'queued',
  endsAt: number,
  opts: { lazy?: boolean } = {},
): Promise<void> {
  const { claims } = await store.claim(claimRequest('r1', 'ch_a', START + 1, { limit: 100 }));
  const claim = claims.find((c) => c.event.id === id);
  assert.ok(claim, `${id} is claimed`);
  for (const other of claims) if (other !== claim) assert.ok(await store.release(ref(other)));
  const settled = await store.settle(ref(claim), outcome(status, endsAt - DURATION, 1), opts);
  assert.equal(settled?.status, status);
}

export function statsTests(backend: Backend): void {
  test('minuteStats: received, delivered, failed and first-delivery latency per minute', async (t) => {
    const h = await fresh(t, backend);
    await appendAll(h.store, [
      payload(1, { receivedAt: T + 1_000 }),
      payload(2, { receivedAt: T + 2_000 }),
      rejectedPayload(3, { receivedAt: T + 2_500 }),
      payload(4, { receivedAt: T + 3_000 }),
      payload(5, { receivedAt: T + 61_000 }),
    ]);
    assert.deepEqual(await h.store.minuteStats({ since: T, until: T + 180_000 }), [
      minute(T, { received: 3 }),
      minute(T + 60_000, { received: 1 }),
    ]);

    // 100 ms after arrival: bucket 7, [100, 200).
    await deliver(h.store, eventId(1), 'delivered', T + 1_100);
    // 5 s after arrival, a lazy settle: bucket 12, [5 s, 10 s); visible at once.
    await deliver(h.store, eventId(2), 'delivered', T + 7_000, { lazy: true });
    // A retry counts nothing; the final failure counts in the minute its attempt ended.
    await deliver(h.store, eventId(4), 'queued', T + 4_000);
    await deliver(h.store, eventId(5), 'failed', T + 125_000);
    // A replay's delivery counts as delivered, not in the latency.
    await h.store.updateEvent(eventId(1), replay(1));
    await deliver(h.store, eventId(1), 'delivered', T + 70_000);

    const expected = [
      minute(T, { received: 3, delivered: 2 }, [
        [7, 1],
        [12, 1],
      ]),
      minute(T + 60_000, { received: 1, delivered: 1 }),
      minute(T + 120_000, { failed: 1 }),
    ];
    assert.deepEqual(await h.store.minuteStats({ since: T, until: T + 600_000 }), expected);
    assert.deepEqual(
      await h.store.minuteStats({ since: T + 60_000, until: T + 120_000 }),
      [expected[1]],
      'since inclusive, until exclusive',
    );
    assert.deepEqual(await h.store.minuteStats({ since: T - 600_000, until: T }), []);

    // Durable, and the same for a new instance.
    await h.reopen();
    assert.deepEqual(await h.store.minuteStats({ since: T, until: T + 600_000 }), expected);

    // Retention forgets the minutes before its cutoff's.
    await h.store.removeFinishedBefore(T + 60_000 + 30_000);
    assert.deepEqual(
      await h.store.minuteStats({ since: T, until: T + 600_000 }),
      expected.slice(1),
    );
  });

  test('minuteStats: many settles of one minute add up, whatever batches they rode in', async (t) => {
    const { store } = await fresh(t, backend);
    const n = 40;
    await appendAll(
      store,
      Array.from({ length: n }, (_, i) => payload(i + 1, { receivedAt: T + i })),
    );
    const { claims } = await store.claim(claimRequest('r1', 'ch_a', START + 1, { limit: n }));
    assert.equal(claims.length, n);
    const settled = await Promise.all(
      claims.map((c, i) =>
        store.settle(ref(c), outcome(i % 4 === 0 ? 'failed' : 'delivered', T + 30_000, 1), {
          lazy: i % 2 === 0,
        }),
      ),
    );
    assert.equal(settled.filter((s) => s !== null).length, n);
    const [m] = await store.minuteStats({ since: T, until: T + 60_000 });
    assert.equal(m?.received, n);
    assert.equal(m?.delivered, 30);
    assert.equal(m?.failed, 10);
    // Latencies between 30 s - 40 ms and 30 s: bucket 14, [20 s, 60 s).
    assert.equal(m?.latency[14], 30);
    assert.equal(
      m?.latency.reduce((a, b) => a + b, 0),
      30,
    );
  });
}
