/**
 * The change feed (rule 6): `event` for every event added or changed, `work` where something
 * may have become claimable, `control` for control changes; unsubscribe stops them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  START,
  FeedLog,
  agent,
  claimRequest,
  eventId,
  fresh,
  only,
  outcome,
  payload,
  ref,
  replay,
  skip,
  waitFor,
  type Backend,
} from './support.ts';
import type { StoreChange } from '../../../server/store/types.ts';

export function feedTests(backend: Backend): void {
  test('feed: event changes for an append and each state change, work where claimable', async (t) => {
    const { store } = await fresh(t, backend);
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    const id = eventId(1);

    await store.appendEvent(payload(1));
    await waitFor('the appended event', () => feed.hasEvent(id, 'queued'));
    await waitFor('work on ch_a after an append', () => feed.hasWork('ch_a'));
    const added = feed.changes.find((c) => c.type === 'event');
    assert.deepEqual(added?.type === 'event' && added.event, await store.getEvent(id));

    feed.clear();
    const c1 = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    await waitFor('the claimed event', () => feed.hasEvent(id, 'delivering'));

    feed.clear();
    assert.ok(await store.settle(ref(c1), outcome('queued', START, 1, START + 5_000)));
    await waitFor('the event settled back to the queue', () => feed.hasEvent(id, 'queued'));
    await waitFor('work after a settle back to the queue', () => feed.hasWork('ch_a'));

    const c2 = only((await store.claim(claimRequest('r1', 'ch_a', START + 5_000))).claims);
    await waitFor('claimed again', () => feed.hasEvent(id, 'delivering'));
    feed.clear();
    assert.equal(await store.release(ref(c2)), true);
    await waitFor('the released event', () => feed.hasEvent(id, 'queued'));
    await waitFor('work after a release', () => feed.hasWork('ch_a'));

    const c3 = only((await store.claim(claimRequest('r1', 'ch_a', START + 5_001))).claims);
    await waitFor('claimed a third time', () => feed.hasEvent(id, 'delivering'));
    feed.clear();
    assert.ok(await store.settle(ref(c3), outcome('delivered', START + 5_002, 2), { lazy: true }));
    await waitFor('the delivered event', () => feed.hasEvent(id, 'delivered'));

    feed.clear();
    await store.updateEvent(id, replay(1), { expect: ['delivered'] });
    await waitFor('the replayed event', () =>
      feed.changes.some(
        (c) =>
          c.type === 'event' &&
          c.event.id === id &&
          c.event.status === 'queued' &&
          c.event.replays === 1,
      ),
    );
    await waitFor('work after a replay', () => feed.hasWork('ch_a'));

    // Changes of another channel name that channel.
    feed.clear();
    await store.appendEvent(payload(2, { channelId: 'ch_b' }));
    await waitFor('work on ch_b', () => feed.hasWork('ch_b'));
    await waitFor('the event on ch_b', () => feed.hasEvent(eventId(2), 'queued'));
  });

  test('feed: work when an ordering key is freed (settled or skipped head)', async (t) => {
    const { store } = await fresh(t, backend);
    const ch = 'ch_o';
    for (const i of [1, 2, 3])
      await store.appendEvent(payload(i, { channelId: ch, orderKey: 'k' }));
    const feed = new FeedLog(store);
    t.after(() => feed.stop());
    const claimHead = async (now: number) =>
      only((await store.claim(claimRequest('r1', ch, now, { ordered: true }))).claims);

    const head = await claimHead(START);
    assert.equal(head.event.id, eventId(1));
    await waitFor('the claimed head', () => feed.hasEvent(eventId(1), 'delivering'));
    feed.clear();
    assert.ok(await store.settle(ref(head), outcome('delivered', START + 1, 1)));
    await waitFor('work when the head is delivered', () => feed.hasWork(ch));

    const second = await claimHead(START + 2);
    assert.equal(second.event.id, eventId(2));
    assert.ok(await store.settle(ref(second), outcome('queued', START + 3, 1, START + 600_000)));
    await waitFor('the head waiting', () => feed.hasEvent(eventId(2), 'queued'));
    feed.clear();
    await store.updateEvent(eventId(2), skip(START + 4, 1), { expect: ['queued'] });
    await waitFor('the skipped head', () => feed.hasEvent(eventId(2), 'failed'));
    await waitFor('work when the head is skipped', () => feed.hasWork(ch));
    assert.equal((await claimHead(START + 5)).event.id, eventId(3));
  });

  test('feed: a listener that wants no event changes gets work and control only', async (t) => {
    const { store } = await fresh(t, backend);
    const seen: StoreChange[] = [];
    const stop = store.subscribe((c) => seen.push(c), { events: false });
    t.after(stop);
    const all = new FeedLog(store);
    t.after(() => all.stop());
    await store.appendEvent(payload(1));
    await store.updateControl((state) => {
      state.agents.push(agent('ag_quiet'));
    });
    await waitFor('the event, for the other listener', () => all.hasEvent(eventId(1), 'queued'));
    await waitFor('work and control', () =>
      ['work', 'control'].every((type) => seen.some((c) => c.type === type)),
    );
    assert.deepEqual(
      seen.filter((c) => c.type === 'event'),
      [],
    );
  });

  test('feed: control changes; unsubscribe stops the changes', async (t) => {
    const { store } = await fresh(t, backend);
    const first = new FeedLog(store);
    t.after(() => first.stop());
    await store.updateControl((state) => {
      state.agents.push(agent('ag_feed'));
    });
    await waitFor('a control change', () => first.hasControl());

    first.stop();
    first.clear();
    // A second listener is the barrier: once it saw the changes, the first would have too.
    const second = new FeedLog(store);
    t.after(() => second.stop());
    await store.appendEvent(payload(1));
    await store.updateControl((state) => {
      state.agents.push(agent('ag_feed_2'));
    });
    const c = only((await store.claim(claimRequest('r1', 'ch_a', START))).claims);
    assert.ok(await store.settle(ref(c), outcome('delivered', START + 1, 1)));
    await waitFor(
      'the second listener',
      () => second.hasControl() && second.hasEvent(eventId(1), 'delivered'),
    );
    assert.ok(second.hasWork('ch_a'));
    assert.deepEqual(first.changes, [], 'nothing after unsubscribe');
    first.stop();
  });
}
