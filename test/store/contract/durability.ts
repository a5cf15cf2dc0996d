/**
 * Durability (rule 1): what resolved survives closing and opening the store again; claims
 * either survive until their lease runs out or are forgotten, as the backend declares (rule 3).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Attempt, EventUpdate } from '../../../server/store/types.ts';
import {
  START,
  agent,
  appendAll,
  assertSamePayload,
  channel,
  claimRequest,
  claimedIds,
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
  skip,
  type Backend,
} from './support.ts';

export function durabilityTests(backend: Backend): void {
  test("durability: an attempt's answer and replay count come back as written, and after a reopen", async (t) => {
    const h = await fresh(t, backend);
    await appendAll(h.store, [payload(1), payload(2)]);
    const got = await h.store.claim(claimRequest('r1', 'ch_a', START, { limit: 2 }));
    const claimOf = (i: number) => {
      const claim = got.claims.find((c) => c.event.id === eventId(i));
      assert.ok(claim, `event ${i} claimed`);
      return ref(claim);
    };
    const answered: Attempt = {
      at: START + 1,
      agentId: 'ag_1',
      outcome: 'failed',
      status: 500,
      durationMs: 7,
      error: 'app answered 500',
      response: {
        headers: [
          ['content-type', 'application/octet-stream'],
          ['x-dup', '1'],
          ['x-dup', 'caf\u00e9'],
          ['set-cookie', '[redacted]'],
        ],
        body: Buffer.from([0x00, 0xff, 0x7b, 0x22, 0x80]).toString('base64'),
        bodyBytes: 5_000,
        truncated: true,
      },
      replay: 3,
    };
    const empty: Attempt = {
      at: START + 2,
      agentId: 'ag_1',
      outcome: 'delivered',
      status: 204,
      durationMs: 1,
      error: null,
      response: { headers: [], body: '', bodyBytes: 0, truncated: false },
    };
    const failed: EventUpdate = {
      status: 'queued',
      attemptCount: 1,
      nextAttemptAt: START + 5_000,
      attempt: answered,
    };
    const delivered: EventUpdate = {
      status: 'delivered',
      attemptCount: 1,
      nextAttemptAt: 0,
      attempt: empty,
    };
    assert.deepEqual((await h.store.settle(claimOf(1), failed, { lazy: true }))?.attempts, [
      answered,
    ]);
    assert.deepEqual((await h.store.settle(claimOf(2), delivered))?.attempts, [empty]);
    assert.deepEqual((await mustGet(h.store, eventId(1))).attempts, [answered]);
    const listed = await listAll(h.store, {});
    assert.deepEqual(
      listed.map((e) => e.attempts),
      [[empty], [answered]],
    );

    const store = await h.reopen();
    assert.deepEqual((await mustGet(store, eventId(1))).attempts, [answered]);
    assert.deepEqual((await mustGet(store, eventId(2))).attempts, [empty]);
    assert.deepEqual(await listAll(store, {}), listed);
  });

  test('durability: events, their states, payloads, dedup keys and control survive a reopen', async (t) => {
    const h = await fresh(t, backend);
    const payloads = [
      payload(1, { dedupKey: 'sig-1' }),
      payload(2),
      payload(3),
      payload(4),
      payload(5),
      payload(6),
      rejectedPayload(7),
      payload(8, { channelId: 'ch_o', orderKey: 'k' }),
      payload(9, { channelId: 'ch_l' }),
    ];
    await appendAll(h.store, payloads);
    const nine = only((await h.store.claim(claimRequest('r1', 'ch_l', START))).claims);
    const got = await h.store.claim(claimRequest('r1', 'ch_a', START, { limit: 4 }));
    const claimOf = (i: number) => {
      const claim = got.claims.find((c) => c.event.id === eventId(i));
      assert.ok(claim, `event ${i} claimed`);
      return ref(claim);
    };
    assert.ok(await h.store.settle(claimOf(1), outcome('delivered', START + 1, 1)));
    assert.ok(await h.store.settle(claimOf(2), outcome('queued', START + 2, 1, START + 5_000)));
    assert.ok(await h.store.settle(claimOf(3), outcome('failed', START + 3, 1), { lazy: true }));
    assert.equal(await h.store.release(claimOf(4), { notBefore: START + 7_000 }), true);
    await h.store.updateEvent(eventId(3), replay(1), { expect: ['failed'] });
    await h.store.updateEvent(eventId(6), skip(START + 4, 0), { expect: ['queued'] });
    await h.store.updateControl((state) => {
      state.channels.push(channel('ch_a'), channel('ch_o', { ordered: true }));
      state.agents.push(agent('ag_1', ['ch_a', 'ch_o']));
    });
    // A lazy settle still waiting for its commit when the store closes: close waits for it.
    const lazy = h.store.settle(ref(nine), outcome('delivered', START + 5, 1), { lazy: true });
    const events = await listAll(h.store, {});
    const control = await h.store.readControl();
    const counted = await h.store.countByStatus();

    const store = await h.reopen();
    assert.equal((await lazy)?.status, 'delivered');
    assert.equal((await mustGet(store, eventId(9))).status, 'delivered');
    assert.deepEqual(await listAll(store, {}), events);
    for (const e of events) assert.deepEqual(await store.getEvent(e.id), e);
    for (const p of payloads) assertSamePayload(await store.readPayload(p.id), p);
    assert.deepEqual(await store.readControl(), control);
    assert.deepEqual(await store.countByStatus(), counted);
    const first = payload(1);
    assert.equal(await store.findByDedupKey('ch_a', 'sig-1', first.receivedAt), eventId(1));
    assert.deepEqual(ids(await listAll(store, { status: 'queued' })), [8, 5, 4, 3, 2].map(eventId));

    // The schedule survives too: 3 (replayed) and 5 are due, 2 and 4 wait.
    const due = await store.claim(claimRequest('r2', 'ch_a', START + 10));
    assert.deepEqual(claimedIds(due.claims), [eventId(3), eventId(5)]);
    assert.equal(due.wakeAt, START + 5_000);
    const later = await store.claim(claimRequest('r2', 'ch_a', START + 7_000));
    assert.deepEqual(claimedIds(later.claims), [eventId(2), eventId(4)]);
  });

  const survive = backend.claimsSurviveReopen;
  test(
    survive
      ? 'durability: claims survive a reopen until their lease runs out'
      : 'durability: claims are forgotten on reopen, and epochs still grow',
    async (t) => {
      const h = await fresh(t, backend);
      await appendAll(h.store, [
        payload(1),
        payload(2, { channelId: 'ch_o', orderKey: 'k' }),
        payload(3, { channelId: 'ch_o', orderKey: 'k' }),
      ]);
      const lease = 10_000;
      const a = only(
        (await h.store.claim(claimRequest('r1', 'ch_a', START, { leaseMs: lease }))).claims,
      );
      const head = only(
        (await h.store.claim(claimRequest('r1', 'ch_o', START, { ordered: true, leaseMs: lease })))
          .claims,
      );
      assert.equal(head.event.id, eventId(2));

      const store = await h.reopen();
      const claimAt = survive ? START + lease + 1 : START + 1;
      if (survive) {
        assert.equal((await mustGet(store, eventId(1))).status, 'delivering');
        assert.equal((await store.countByStatus()).delivering, 2);
        assert.deepEqual((await store.claim(claimRequest('r2', 'ch_a', START + 1))).claims, []);
        assert.deepEqual(
          (await store.claim(claimRequest('r2', 'ch_o', START + 1, { ordered: true }))).claims,
          [],
        );
      } else {
        assert.equal((await mustGet(store, eventId(1))).status, 'queued');
        assert.equal((await mustGet(store, eventId(2))).status, 'queued');
        assert.equal((await store.countByStatus()).delivering, 0);
        assert.deepEqual(ids(await listAll(store, { status: 'delivering' })), []);
      }
      const b = only((await store.claim(claimRequest('r2', 'ch_a', claimAt))).claims);
      assert.equal(b.event.id, eventId(1));
      assert.ok(b.epoch > a.epoch, `epoch ${b.epoch} > ${a.epoch} across a reopen`);
      const head2 = only(
        (await store.claim(claimRequest('r2', 'ch_o', claimAt, { ordered: true }))).claims,
      );
      assert.equal(head2.event.id, eventId(2), 'the head again, not the event behind it');
      assert.ok(head2.epoch > head.epoch);

      // The claims made before the reopen are refused and change nothing.
      const claimed = await mustGet(store, eventId(1));
      assert.equal(await store.settle(ref(a), outcome('delivered', claimAt + 1, 1)), null);
      assert.equal(await store.release(ref(head)), false);
      assert.deepEqual(await store.getEvent(eventId(1)), claimed);
      assert.equal((await mustGet(store, eventId(2))).status, 'delivering');
      assert.equal(
        (await store.settle(ref(b), outcome('delivered', claimAt + 2, 1)))?.status,
        'delivered',
      );
    },
  );
}
