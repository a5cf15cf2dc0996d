import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EmbeddedStore, MAX_ATTEMPTS_KEPT } from '../../server/store/embedded.ts';
import { MAX_REJECTED_PER_CHANNEL } from '../../server/store/types.ts';
import { EVENTS_FILE, LAYOUT, openEventDb } from '../../server/store/event-db.ts';
import { Journal } from '../../server/store/journal.ts';
import { encodeEventRecord, encodeUpdateRecord } from '../../server/store/records.ts';
import type {
  Attempt,
  ChannelRecord,
  ClaimRef,
  EventPayload,
  EventStatus,
  EventSummary,
  EventUpdate,
} from '../../server/store/types.ts';
import { PosternError } from '../../shared/errors.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'postern-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: TestContext, dataDir: string): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir });
  await store.open();
  t.after(() => store.close());
  return store;
}

/** Closes `store` and opens the same data directory again. */
async function reopen(
  t: TestContext,
  store: EmbeddedStore,
  dataDir: string,
): Promise<EmbeddedStore> {
  await store.close();
  return openStore(t, dataDir);
}

function eventId(i: number): string {
  return `evt_${String(i).padStart(26, '0')}`;
}

function payload(i: number, channelId = 'ch_a'): EventPayload {
  return {
    id: eventId(i),
    channelId,
    receivedAt: 1_700_000_000_000 + i,
    method: 'POST',
    path: `/push/${i}`,
    query: i % 2 === 0 ? `n=${i}&x=%ZZ` : '',
    headers: [
      ['Content-Type', 'application/json'],
      ['X-Dup', 'a'],
      ['x-dup', 'b'],
    ],
    originalUrl: `https://relay.example.com/h/${channelId}/push/${i}`,
    remoteAddress: '203.0.113.9',
    body: Buffer.concat([Buffer.from(`{"n":${i}}`), Buffer.from([0xff, 0x00, 0x80])]),
  };
}

function attempt(i: number, outcome: Attempt['outcome'] = 'failed'): Attempt {
  return {
    at: 1_700_000_100_000 + i,
    agentId: 'ag_1',
    outcome,
    status: outcome === 'failed' ? 500 : outcome === 'delivered' ? 200 : null,
    durationMs: i,
    error: outcome === 'failed' ? `app answered 500 (#${i})` : null,
  };
}

/** Ids of the events still to deliver (queued or being delivered), oldest first. */
async function pendingIds(store: EmbeddedStore): Promise<string[]> {
  const { events } = await store.listEvents({ limit: 1_000 });
  return events
    .filter((e) => e.status === 'queued' || e.status === 'delivering')
    .map((e) => e.id)
    .reverse();
}

/** Claims the due events of a channel, oldest first; returns the claims by event id. */
async function claimAll(
  store: EmbeddedStore,
  channelId = 'ch_a',
  limit = 1_000,
): Promise<Map<string, ClaimRef>> {
  const { claims } = await store.claim({
    owner: 'relay-test',
    channelId,
    ordered: false,
    limit,
    now: 1_700_000_000_000,
    leaseMs: 60_000,
  });
  return new Map(claims.map((c) => [c.event.id, { id: c.event.id, epoch: c.epoch }]));
}

function counts(partial: Partial<Record<EventStatus, number>>): Record<EventStatus, number> {
  return {
    queued: 0,
    delivering: 0,
    delivered: 0,
    failed: 0,
    rejected: 0,
    filtered: 0,
    ...partial,
  };
}

test('appendEvent returns a queued summary; getEvent and readPayload give it back', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const p = payload(1);
  const summary = await store.appendEvent(p);
  const expected: EventSummary = {
    id: p.id,
    channelId: 'ch_a',
    status: 'queued',
    receivedAt: p.receivedAt,
    method: 'POST',
    path: '/push/1',
    query: '',
    size: p.body.length,
    attemptCount: 0,
    attempts: [],
    nextAttemptAt: 0,
    reason: null,
    orderKey: '',
    deliveredRoutes: [],
    replays: 0,
  };
  assert.deepEqual(summary, expected);
  assert.deepEqual(await store.getEvent(p.id), expected);
  assert.deepEqual(await store.readPayload(p.id), p);
  assert.equal(await store.getEvent('evt_missing'), undefined);
  await assert.rejects(store.readPayload('evt_missing'), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_NOT_FOUND');
    assert.equal(err.status, 404);
    return true;
  });
});

test('readPayload reads the bytes back from disk (and after reopen)', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const events = [payload(1), payload(2, 'ch_b'), { ...payload(3), body: Buffer.alloc(0) }];
  for (const p of events) await store.appendEvent(p);
  for (const p of events) assert.deepEqual(await store.readPayload(p.id), p);
  const again = await reopen(t, store, dir);
  for (const p of events) assert.deepEqual(await again.readPayload(p.id), p);
  assert.deepEqual(
    await pendingIds(again),
    events.map((p) => p.id),
  );
});

test('a journal of an earlier release is converted on open, with every status, then kept aside', async (t) => {
  const dir = await tempDir(t);
  // What the previous release wrote: events and their state changes in journal segments.
  const journal = new Journal(path.join(dir, 'journal'), { segmentBytes: 2_000 });
  await journal.open(() => undefined);
  const events = Array.from({ length: 30 }, (_, i) => ({
    ...payload(i),
    ...(i % 5 === 0 ? { dedupKey: `key-${i}` } : {}),
  }));
  for (const p of events) await journal.append(encodeEventRecord(p));
  const attempt = (outcome: 'delivered' | 'failed' | 'filtered') => ({
    at: 1_700_000_100_000,
    agentId: 'ag_1',
    outcome,
    status: outcome === 'failed' ? 500 : 200,
    durationMs: 3,
    error: outcome === 'failed' ? 'app answered 500' : null,
  });
  const updates: [number, EventUpdate][] = [
    [1, { status: 'delivered', attemptCount: 1, nextAttemptAt: 0, attempt: attempt('delivered') }],
    [2, { status: 'failed', attemptCount: 3, nextAttemptAt: 0, attempt: attempt('failed') }],
    [3, { status: 'filtered', attemptCount: 0, nextAttemptAt: 0, attempt: attempt('filtered') }],
    [
      4,
      {
        status: 'queued',
        attemptCount: 1,
        nextAttemptAt: 1_700_000_200_000,
        attempt: attempt('failed'),
      },
    ],
    [6, { status: 'delivering', attemptCount: 0, nextAttemptAt: 0 }],
  ];
  for (const [i, u] of updates) await journal.append(encodeUpdateRecord(eventId(i), u));
  const refused = {
    ...payload(40),
    body: Buffer.alloc(0),
    rejected: { reason: 'signature_mismatch', size: 9 },
  };
  await journal.append(encodeEventRecord(refused));
  await journal.close();
  assert.ok((await readdir(path.join(dir, 'journal'))).length > 3, 'several segments');

  const lines: string[] = [];
  const log = { info: (_f: Record<string, unknown>, msg: string) => lines.push(msg), warn() {} };
  const store = new EmbeddedStore({ dataDir: dir, logger: log });
  await store.open();
  t.after(() => store.close());
  assert.ok(
    lines.some((l) => l === 'converting the journal of an earlier release: 31 events'),
    lines.join('\n'),
  );
  assert.ok(lines.some((l) => l.startsWith('converted 31 events into events.mdb')));
  const names = await readdir(dir);
  assert.ok(!names.includes('journal') && names.includes('journal.converted'), names.join(', '));
  assert.deepEqual(await store.countByStatus(), {
    queued: 27,
    delivering: 0,
    delivered: 1,
    failed: 1,
    rejected: 1,
    filtered: 1,
  });
  for (const p of events) assert.deepEqual(await store.readPayload(p.id), p);
  assert.equal((await store.getEvent(eventId(1)))?.status, 'delivered');
  assert.deepEqual((await store.getEvent(eventId(2)))?.attempts, [attempt('failed')]);
  assert.equal((await store.getEvent(eventId(4)))?.nextAttemptAt, 1_700_000_200_000);
  assert.equal(
    (await store.getEvent(eventId(6)))?.status,
    'queued',
    'nothing is in flight after a restart',
  );
  assert.equal((await store.getEvent(refused.id))?.reason, 'signature_mismatch');
  assert.equal(await store.findByDedupKey('ch_a', 'key-5', 0), eventId(5));
  assert.equal((await store.listEvents({ limit: 100 })).events.length, 31);
  // A second open converts nothing again.
  const again = await reopen(t, store, dir);
  assert.equal((await again.listEvents({ limit: 100 })).events.length, 31);
  assert.equal(lines.filter((l) => l.startsWith('converting')).length, 1);
});

test('updateEvent changes state at once, and reopen rebuilds it from the journal', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const a = payload(1);
  const b = payload(2);
  await store.appendEvent(a);
  await store.appendEvent(b);

  const afterFail = await store.updateEvent(a.id, {
    status: 'queued',
    attemptCount: 1,
    nextAttemptAt: 1_700_000_105_000,
    attempt: attempt(1),
  });
  assert.equal(afterFail.status, 'queued');
  assert.equal(afterFail.attemptCount, 1);
  assert.equal(afterFail.nextAttemptAt, 1_700_000_105_000);
  assert.deepEqual(afterFail.attempts, [attempt(1)]);

  await store.updateEvent(a.id, {
    status: 'delivered',
    attemptCount: 2,
    nextAttemptAt: 0,
    attempt: attempt(2, 'delivered'),
  });
  await store.updateEvent(b.id, {
    status: 'failed',
    attemptCount: 1,
    nextAttemptAt: 0,
    attempt: attempt(3),
  });
  const before = [await store.getEvent(a.id), await store.getEvent(b.id)];
  assert.deepEqual(before, [
    {
      id: a.id,
      channelId: 'ch_a',
      status: 'delivered',
      receivedAt: a.receivedAt,
      method: 'POST',
      path: '/push/1',
      query: '',
      size: a.body.length,
      attemptCount: 2,
      attempts: [attempt(1), attempt(2, 'delivered')],
      nextAttemptAt: 0,
      reason: null,
      orderKey: '',
      deliveredRoutes: [],
      replays: 0,
    },
    {
      id: b.id,
      channelId: 'ch_a',
      status: 'failed',
      receivedAt: b.receivedAt,
      method: 'POST',
      path: '/push/2',
      query: 'n=2&x=%ZZ',
      size: b.body.length,
      attemptCount: 1,
      attempts: [attempt(3)],
      nextAttemptAt: 0,
      reason: null,
      orderKey: '',
      deliveredRoutes: [],
      replays: 0,
    },
  ]);

  const again = await reopen(t, store, dir);
  assert.deepEqual([await again.getEvent(a.id), await again.getEvent(b.id)], before);
  assert.deepEqual(await again.countByStatus(), counts({ delivered: 1, failed: 1 }));
  // Delivered and failed events still read back from disk.
  assert.deepEqual(await again.readPayload(a.id), a);
  assert.deepEqual(await again.readPayload(b.id), b);
});

test('the attempts log keeps the last MAX_ATTEMPTS_KEPT; the count keeps counting', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const p = payload(1);
  await store.appendEvent(p);
  const total = MAX_ATTEMPTS_KEPT + 5;
  for (let i = 1; i <= total; i++) {
    await store.updateEvent(p.id, {
      status: 'queued',
      attemptCount: i,
      nextAttemptAt: 1_700_000_200_000 + i,
      attempt: attempt(i),
    });
  }
  const kept = Array.from({ length: MAX_ATTEMPTS_KEPT }, (_, k) =>
    attempt(total - MAX_ATTEMPTS_KEPT + 1 + k),
  );
  assert.equal(MAX_ATTEMPTS_KEPT, 20);
  assert.equal((await store.getEvent(p.id))?.attemptCount, total);
  assert.deepEqual((await store.getEvent(p.id))?.attempts, kept);

  const again = await reopen(t, store, dir);
  const summary = await again.getEvent(p.id);
  assert.equal(summary?.attemptCount, total);
  assert.equal(summary?.nextAttemptAt, 1_700_000_200_000 + total);
  assert.equal(summary?.attempts.length, MAX_ATTEMPTS_KEPT);
  assert.deepEqual(summary?.attempts, kept);
});

test('an update without an attempt (a replay) keeps the attempts log', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const p = payload(1);
  await store.appendEvent(p);
  await store.updateEvent(p.id, {
    status: 'failed',
    attemptCount: 3,
    nextAttemptAt: 0,
    attempt: attempt(1),
  });
  await store.updateEvent(p.id, {
    status: 'queued',
    attemptCount: 0,
    nextAttemptAt: 0,
    replays: 1,
  });
  const again = await reopen(t, store, dir);
  const summary = await again.getEvent(p.id);
  assert.equal(summary?.status, 'queued');
  assert.equal(summary?.attemptCount, 0);
  assert.equal(summary?.replays, 1);
  assert.deepEqual(summary?.attempts, [attempt(1)]);
  assert.deepEqual(await pendingIds(again), [p.id]);
});

test('updateEvent on an unknown event is ERR_NOT_FOUND', async (t) => {
  const store = await openStore(t, await tempDir(t));
  await assert.rejects(
    store.updateEvent('evt_nope', { status: 'queued', attemptCount: 0, nextAttemptAt: 0 }),
    (err: unknown) => err instanceof PosternError && err.code === 'ERR_NOT_FOUND',
  );
});

test('claimed events come back as queued after reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const a = payload(1);
  const b = payload(2);
  const c = payload(3);
  for (const p of [a, b, c]) await store.appendEvent(p);
  await store.updateEvent(a.id, { status: 'queued', attemptCount: 2, nextAttemptAt: 0 });
  // Claims live in memory only (one relay per data dir).
  assert.deepEqual([...(await claimAll(store, 'ch_a', 2)).keys()], [a.id, b.id]);
  assert.equal((await store.getEvent(b.id))?.status, 'delivering');
  assert.deepEqual(await store.countByStatus(), counts({ delivering: 2, queued: 1 }));

  const again = await reopen(t, store, dir);
  assert.equal((await again.getEvent(a.id))?.status, 'queued');
  assert.equal((await again.getEvent(a.id))?.attemptCount, 2);
  assert.equal((await again.getEvent(b.id))?.status, 'queued');
  assert.deepEqual(await again.countByStatus(), counts({ queued: 3 }));
  assert.deepEqual(await pendingIds(again), [a.id, b.id, c.id]);
});

test('claims move only queued → delivering, and back when released', async (t) => {
  const store = await openStore(t, await tempDir(t));
  const a = payload(1);
  const b = payload(2);
  await store.appendEvent(a);
  await store.appendEvent(b);
  await store.updateEvent(b.id, { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  const claims = await claimAll(store);
  assert.deepEqual([...claims.keys()], [a.id], 'a delivered event is not claimed');
  assert.equal((await claimAll(store)).size, 0, 'a claimed event is not claimed twice');
  assert.deepEqual(await store.countByStatus(), counts({ delivering: 1, delivered: 1 }));
  assert.equal(await store.release(claims.get(a.id)!), true);
  assert.equal(await store.release(claims.get(a.id)!), false, 'a claim ends once');
  assert.deepEqual(await store.countByStatus(), counts({ queued: 1, delivered: 1 }));
  assert.equal((await store.getEvent(a.id))?.status, 'queued');
});

/** 25 events, alternating channels ch_a (even) and ch_b (odd); every third one delivered. */
async function listing(t: TestContext): Promise<{ store: EmbeddedStore; dir: string }> {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 0; i < 25; i++) await store.appendEvent(payload(i, i % 2 === 0 ? 'ch_a' : 'ch_b'));
  for (let i = 0; i < 25; i += 3) {
    await store.updateEvent(eventId(i), { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  }
  return { store, dir };
}

function ids(indexes: number[]): string[] {
  return indexes.map(eventId);
}

function range(from: number, downTo: number): number[] {
  const out: number[] = [];
  for (let i = from; i >= downTo; i--) out.push(i);
  return out;
}

test('listEvents: newest first, pages of 10 with the before cursor', async (t) => {
  const { store } = await listing(t);
  const page1 = await store.listEvents({ limit: 10 });
  assert.deepEqual(
    page1.events.map((e) => e.id),
    ids(range(24, 15)),
  );
  assert.equal(page1.next, eventId(15));
  const page2 = await store.listEvents({ limit: 10, before: page1.next! });
  assert.deepEqual(
    page2.events.map((e) => e.id),
    ids(range(14, 5)),
  );
  assert.equal(page2.next, eventId(5));
  const page3 = await store.listEvents({ limit: 10, before: page2.next! });
  assert.deepEqual(
    page3.events.map((e) => e.id),
    ids(range(4, 0)),
  );
  assert.equal(page3.next, null);
});

test('listEvents: a last page that is exactly full has no next cursor', async (t) => {
  const { store } = await listing(t);
  const page = await store.listEvents({ limit: 5, before: eventId(5) });
  assert.deepEqual(
    page.events.map((e) => e.id),
    ids(range(4, 0)),
  );
  assert.equal(page.next, null);
  const all = await store.listEvents({ limit: 25 });
  assert.equal(all.events.length, 25);
  assert.equal(all.next, null);
  assert.deepEqual(await store.listEvents({ limit: 10, before: eventId(0) }), {
    events: [],
    next: null,
  });
});

test('listEvents: channel filter with paging', async (t) => {
  const { store } = await listing(t);
  const even = range(24, 0).filter((i) => i % 2 === 0); // 13 events on ch_a
  const p1 = await store.listEvents({ channelId: 'ch_a', limit: 5 });
  assert.deepEqual(
    p1.events.map((e) => e.id),
    ids(even.slice(0, 5)),
  );
  assert.equal(p1.next, eventId(16));
  const p2 = await store.listEvents({ channelId: 'ch_a', limit: 5, before: p1.next! });
  assert.deepEqual(
    p2.events.map((e) => e.id),
    ids(even.slice(5, 10)),
  );
  assert.equal(p2.next, eventId(6));
  const p3 = await store.listEvents({ channelId: 'ch_a', limit: 5, before: p2.next! });
  assert.deepEqual(
    p3.events.map((e) => e.id),
    ids(even.slice(10)),
  );
  assert.equal(p3.next, null);
  assert.deepEqual(await store.listEvents({ channelId: 'ch_zzz', limit: 5 }), {
    events: [],
    next: null,
  });
});

test('listEvents: status filter, and status with channel', async (t) => {
  const { store } = await listing(t);
  const delivered = await store.listEvents({ status: 'delivered', limit: 100 });
  assert.deepEqual(
    delivered.events.map((e) => e.id),
    ids([24, 21, 18, 15, 12, 9, 6, 3, 0]),
  );
  assert.equal(delivered.next, null);
  const deliveredB = await store.listEvents({ status: 'delivered', channelId: 'ch_b', limit: 2 });
  assert.deepEqual(
    deliveredB.events.map((e) => e.id),
    ids([21, 15]),
  );
  assert.equal(deliveredB.next, eventId(15));
  const rest = await store.listEvents({
    status: 'delivered',
    channelId: 'ch_b',
    limit: 2,
    before: eventId(15),
  });
  assert.deepEqual(
    rest.events.map((e) => e.id),
    ids([9, 3]),
  );
  assert.equal(rest.next, null);
  const queued = await store.listEvents({ status: 'queued', limit: 100 });
  assert.equal(queued.events.length, 16);
  assert.equal(
    queued.events.every((e) => e.status === 'queued'),
    true,
  );
});

test('listEvents: an unknown cursor is a 400', async (t) => {
  const { store } = await listing(t);
  await assert.rejects(
    store.listEvents({ limit: 10, before: 'evt_unknown' }),
    (err: unknown) =>
      err instanceof PosternError && err.code === 'ERR_BAD_REQUEST' && err.status === 400,
  );
});

test('listEvents after reopen keeps arrival order', async (t) => {
  const { store, dir } = await listing(t);
  const again = await reopen(t, store, dir);
  const page = await again.listEvents({ limit: 3, before: eventId(10) });
  assert.deepEqual(
    page.events.map((e) => e.id),
    ids([9, 8, 7]),
  );
  assert.equal(page.next, eventId(7));
});

test('countByStatus counts every status, and is a copy', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  assert.deepEqual(await store.countByStatus(), counts({}));
  for (let i = 0; i < 6; i++) await store.appendEvent(payload(i));
  await store.updateEvent(eventId(0), { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  await store.updateEvent(eventId(1), { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  await store.updateEvent(eventId(2), { status: 'failed', attemptCount: 9, nextAttemptAt: 0 });
  await store.updateEvent(eventId(3), { status: 'rejected', attemptCount: 0, nextAttemptAt: 0 });
  assert.deepEqual([...(await claimAll(store, 'ch_a', 1)).keys()], [eventId(4)]);
  const c = await store.countByStatus();
  assert.deepEqual(c, counts({ queued: 1, delivering: 1, delivered: 2, failed: 1, rejected: 1 }));
  c.queued = 100;
  assert.equal((await store.countByStatus()).queued, 1);
  const again = await reopen(t, store, dir);
  assert.deepEqual(
    await again.countByStatus(),
    counts({ queued: 2, delivered: 2, failed: 1, rejected: 1 }),
  );
  assert.deepEqual(await pendingIds(again), ids([4, 5]));
});

function channel(id: string, name: string): ChannelRecord {
  return {
    id,
    name,
    verify: { provider: 'github', secret: 'gh-secret' },
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [5_000] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 1_024,
    methods: null,
    paths: null,
    createdAt: 1_700_000_000_000,
  };
}

test('updateControl persists across reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  // Other control fields may exist; these four start empty.
  const initial = structuredClone(await store.readControl());
  assert.deepEqual(initial, {
    ...initial,
    adminTokenHash: null,
    channels: [],
    agents: [],
    pairings: [],
  });
  await store.updateControl((s) => {
    s.adminTokenHash = 'a'.repeat(64);
    s.channels.push(channel('ch_1', 'one'));
  });
  await store.updateControl((s) => {
    s.channels.push(channel('ch_2', 'two'));
    s.pairings.push({ codeHash: 'b'.repeat(64), agentId: 'ag_1', expiresAt: 5 });
  });
  const expected = {
    ...initial,
    adminTokenHash: 'a'.repeat(64),
    channels: [channel('ch_1', 'one'), channel('ch_2', 'two')],
    agents: [],
    pairings: [{ codeHash: 'b'.repeat(64), agentId: 'ag_1', expiresAt: 5 }],
  };
  assert.deepEqual(await store.readControl(), expected);
  const again = await reopen(t, store, dir);
  assert.deepEqual(await again.readControl(), expected);
});

test('a change that throws leaves the control state unchanged, in memory and on disk', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await store.updateControl((s) => {
    s.channels.push(channel('ch_1', 'one'));
  });
  const before = structuredClone(await store.readControl());
  await assert.rejects(
    store.updateControl((s) => {
      s.channels.push(channel('ch_2', 'two'));
      s.adminTokenHash = 'changed';
      s.channels[0]!.name = 'mutated';
      throw new Error('change refused');
    }),
    /change refused/,
  );
  assert.deepEqual(await store.readControl(), before);
  const again = await reopen(t, store, dir);
  assert.deepEqual(await again.readControl(), before);
});

test('state.json is written by rename: it parses and no temp file remains', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 0; i < 3; i++) {
    await store.updateControl((s) => {
      s.channels.push(channel(`ch_${i}`, `n${i}`));
    });
  }
  const names = (await readdir(dir)).sort();
  assert.deepEqual(names, [
    'events.mdb',
    'events.mdb-lock',
    'relay.lock',
    'secrets.key',
    'state.json',
  ]);
  const parsed = JSON.parse(await readFile(path.join(dir, 'state.json'), 'utf8')) as {
    channels: { verify: { secret: string } }[];
  };
  // The secrets are encrypted on disk (see test/server/sealed-secrets.test.ts).
  for (const c of parsed.channels) {
    assert.match(c.verify.secret, /^enc:v1:/);
    c.verify.secret = 'gh-secret';
  }
  assert.deepEqual(parsed, {
    ...(await store.readControl()),
    adminTokenHash: null,
    channels: [channel('ch_0', 'n0'), channel('ch_1', 'n1'), channel('ch_2', 'n2')],
    agents: [],
    pairings: [],
  });
});

test('concurrent updateControl calls all apply: none is lost', async (t) => {
  // Two admin requests at once (say, two POST /api/channels) must both be kept.
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      store.updateControl((s) => {
        s.channels.push(channel(`ch_${i}`, `n${i}`));
      }),
    ),
  );
  assert.deepEqual(
    (await store.readControl()).channels.map((c) => c.id),
    Array.from({ length: 10 }, (_, i) => `ch_${i}`),
  );
  assert.deepEqual((await readdir(dir)).sort(), [
    'events.mdb',
    'events.mdb-lock',
    'relay.lock',
    'secrets.key',
    'state.json',
  ]);
  const again = await reopen(t, store, dir);
  assert.equal((await again.readControl()).channels.length, 10);
});

test('a state.json that is not valid JSON makes open() fail with ERR_STORE_CORRUPT', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await store.updateControl((s) => {
    s.adminTokenHash = 'x';
  });
  await store.close();
  await writeFile(path.join(dir, 'state.json'), '{"adminTokenHash": ');
  const broken = new EmbeddedStore({ dataDir: dir });
  await assert.rejects(
    broken.open(),
    (err: unknown) => err instanceof PosternError && err.code === 'ERR_STORE_CORRUPT',
  );
  await writeFile(path.join(dir, 'state.json'), '{"channels": []}');
  const wrongShape = new EmbeddedStore({ dataDir: dir });
  await assert.rejects(
    wrongShape.open(),
    (err: unknown) => err instanceof PosternError && err.code === 'ERR_STORE_CORRUPT',
  );
});

test('a refused request is kept as metadata only, and at most MAX_REJECTED_PER_CHANNEL of them', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const first = payload(1);
  const summary = await store.appendEvent({
    ...first,
    body: Buffer.alloc(0),
    rejected: { reason: 'signature_mismatch', size: 123 },
  });
  assert.equal(summary.status, 'rejected');
  assert.equal(summary.reason, 'signature_mismatch');
  assert.equal(summary.size, 123);
  assert.deepEqual(await pendingIds(store), [], 'a rejected event is never delivered');
  const overflow = MAX_REJECTED_PER_CHANNEL + 5;
  await Promise.all(
    Array.from({ length: overflow - 1 }, (_, i) =>
      store.appendEvent({
        ...payload(i + 2),
        body: Buffer.alloc(0),
        rejected: { reason: 'missing_signature', size: 0 },
      }),
    ),
  );
  assert.equal((await store.countByStatus()).rejected, MAX_REJECTED_PER_CHANNEL);
  assert.equal(await store.getEvent(first.id), undefined, 'the oldest refused request went first');
  const listed = await store.listEvents({ limit: 500, status: 'rejected' });
  assert.equal(listed.events.length, 500);
  assert.ok(listed.next);
  const reopened = await reopen(t, store, dir);
  assert.equal(
    (await reopened.countByStatus()).rejected,
    MAX_REJECTED_PER_CHANNEL,
    'bounded after a restart too',
  );
  assert.equal((await reopened.readPayload(payload(overflow).id)).body.length, 0);
});

test('findByDedupKey: per channel, within `since`, across a reopen; refused events carry none', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const keyed = { ...payload(1), dedupKey: 'A'.repeat(43) };
  await store.appendEvent(keyed);
  await store.appendEvent(payload(2)); // no key: an unverified channel
  await store.appendEvent({
    ...payload(3),
    dedupKey: 'B'.repeat(43),
    body: Buffer.alloc(0),
    rejected: { reason: 'signature_mismatch', size: 10 },
  });
  const check = async (s: EmbeddedStore) => {
    assert.equal(await s.findByDedupKey('ch_a', 'A'.repeat(43), keyed.receivedAt), keyed.id);
    assert.equal(await s.findByDedupKey('ch_a', 'A'.repeat(43), keyed.receivedAt + 1), undefined);
    assert.equal(await s.findByDedupKey('ch_b', 'A'.repeat(43), 0), undefined);
    assert.equal(await s.findByDedupKey('ch_a', 'B'.repeat(43), 0), undefined, 'refused');
  };
  await check(store);
  assert.deepEqual(await store.readPayload(keyed.id), keyed, 'the key is part of the record');
  const again = await reopen(t, store, dir);
  await check(again);
  assert.equal((await again.readPayload(keyed.id)).dedupKey, keyed.dedupKey);
  assert.equal((await again.readPayload(payload(2).id)).dedupKey, undefined);
});

test('a state.json of an earlier version: channels get methods and paths null', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await store.updateControl((s) => {
    s.channels.push(channel('ch_1', 'one'));
  });
  await store.close();
  const file = path.join(dir, 'state.json');
  const raw = JSON.parse(await readFile(file, 'utf8')) as { channels: Record<string, unknown>[] };
  for (const c of raw.channels) {
    delete c['methods'];
    delete c['paths'];
  }
  await writeFile(file, JSON.stringify(raw));
  const again = await openStore(t, dir);
  assert.deepEqual((await again.readControl()).channels, [channel('ch_1', 'one')]);
});

test('a lazy change is visible at once, in lists too, and durable once it resolves', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 1; i <= 3; i++) await store.appendEvent(payload(i));
  const claims = await claimAll(store);
  await store.release(claims.get(eventId(1))!);
  await store.release(claims.get(eventId(3))!);
  const written = store.settle(
    claims.get(eventId(2))!,
    { status: 'failed', attemptCount: 1, nextAttemptAt: 0 },
    { lazy: true },
  );
  // Not committed yet: reads, counts and filtered lists already show it.
  assert.equal((await store.getEvent(eventId(2)))?.status, 'failed');
  assert.equal((await store.countByStatus()).failed, 1);
  assert.deepEqual(
    (await store.listEvents({ limit: 10, status: 'failed' })).events.map((e) => e.id),
    [eventId(2)],
  );
  assert.deepEqual(
    (await store.listEvents({ limit: 10, status: 'queued', channelId: 'ch_a' })).events.map(
      (e) => e.id,
    ),
    [eventId(3), eventId(1)],
  );
  await written;
  const again = await reopen(t, store, dir);
  assert.equal((await again.getEvent(eventId(2)))?.status, 'failed');
  assert.deepEqual(
    (await again.listEvents({ limit: 10, status: 'failed' })).events.map((e) => e.id),
    [eventId(2)],
  );
});

test('a list while changes are under way holds each event once, newest first', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 1; i <= 6; i++) await store.appendEvent(payload(i));
  const claims = await claimAll(store);
  for (const i of [1, 3, 6]) await store.release(claims.get(eventId(i))!);
  const pending = [2, 4, 5].map((i) =>
    store.settle(
      claims.get(eventId(i))!,
      { status: 'queued', attemptCount: 1, nextAttemptAt: 0 },
      { lazy: true },
    ),
  );
  const ids = (await store.listEvents({ limit: 100 })).events.map((e) => e.id);
  assert.deepEqual(ids, [6, 5, 4, 3, 2, 1].map(eventId));
  const queued = (await store.listEvents({ limit: 100, status: 'queued' })).events.map((e) => e.id);
  assert.deepEqual(queued, [6, 5, 4, 3, 2, 1].map(eventId));
  await Promise.all(pending);
});

test('a durable change made while a lazy one waits is the one that stays', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  await store.appendEvent(payload(1));
  const lazy = store.settle(
    (await claimAll(store)).get(eventId(1))!,
    { status: 'failed', attemptCount: 3, nextAttemptAt: 0 },
    { lazy: true },
  );
  await store.updateEvent(eventId(1), {
    status: 'queued',
    attemptCount: 0,
    nextAttemptAt: 0,
    replays: 1,
  });
  await lazy;
  await store.appendEvent(payload(2)); // a later commit, which lazy changes ride along with
  assert.equal((await store.getEvent(eventId(1)))?.attemptCount, 0);
  const again = await reopen(t, store, dir);
  assert.equal((await again.getEvent(eventId(1)))?.status, 'queued');
  assert.equal((await again.getEvent(eventId(1)))?.attemptCount, 0);
});

test('events.mdb of layout 1 (no pending index) is indexed on open; a newer layout is refused', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 1; i <= 4; i++) await store.appendEvent(payload(i, i % 2 === 0 ? 'ch_b' : 'ch_a'));
  await store.updateEvent(eventId(3), { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
  await store.close();
  // What the first LMDB release wrote: the same events, no claim indexes, no layout.
  const db = openEventDb(path.join(dir, EVENTS_FILE));
  await db.root.transaction(() => {
    for (const key of db.pending.getKeys()) db.pending.removeSync(key);
    for (const key of db.lanes.getKeys()) db.lanes.removeSync(key);
    db.meta.removeSync('layout');
  });
  await db.root.close();

  const logged: unknown[] = [];
  const log = { info: (fields: unknown) => logged.push(fields), warn: () => undefined };
  const again = new EmbeddedStore({ dataDir: dir, logger: log });
  await again.open();
  t.after(() => again.close());
  assert.deepEqual(logged, [{ indexed: 3 }]);
  assert.deepEqual([...(await claimAll(again, 'ch_a')).keys()], [eventId(1)]);
  assert.deepEqual([...(await claimAll(again, 'ch_b')).keys()], [eventId(2), eventId(4)]);
  await again.close();

  const newer = openEventDb(path.join(dir, EVENTS_FILE));
  await newer.root.transaction(() => newer.meta.putSync('layout', LAYOUT + 1));
  await newer.root.close();
  await assert.rejects(
    new EmbeddedStore({ dataDir: dir }).open(),
    /layout 3, newer than this relay knows \(2\)/,
  );
});
