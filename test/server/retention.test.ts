/**
 * Retention in the embedded store: finished events past their age are removed with their
 * payloads and index entries, queued ones never are, and the pages they used are reused, so
 * the file stops growing under steady traffic. Dedup keys outlive their events for the replay
 * window, then go too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { eventIdGenerator } from '../../server/ids.ts';
import { EmbeddedStore, MAX_DEDUP_AGE_MS } from '../../server/store/embedded.ts';
import { EVENTS_FILE } from '../../server/store/event-db.ts';
import type { EventPayload } from '../../server/store/types.ts';

const T0 = 1_700_000_000_000;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'postern-retention-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: TestContext, dataDir: string): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir });
  await store.open();
  t.after(() => store.close());
  return store;
}

/** Events with real (time-ordered) ids, received at `at`. */
function events(at: number, n: number, extra: Partial<EventPayload> = {}): EventPayload[] {
  const next = eventIdGenerator(() => at);
  return Array.from({ length: n }, (_, i) => ({
    id: next(),
    channelId: 'ch_r',
    receivedAt: at,
    method: 'POST',
    path: `/n/${i}`,
    query: '',
    headers: [['content-type', 'application/octet-stream']],
    originalUrl: `https://relay.example.com/h/ch_r/n/${i}`,
    remoteAddress: '203.0.113.1',
    body: Buffer.alloc(1024, i & 0xff),
    ...extra,
  }));
}

const delivered = { status: 'delivered' as const, attemptCount: 1, nextAttemptAt: 0 };
const failed = { status: 'failed' as const, attemptCount: 5, nextAttemptAt: 0 };

test('finished events past the cutoff go with their payloads; queued and newer ones stay', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const old = events(T0, 40);
  const young = events(T0 + 10_000, 10);
  for (const p of [...old, ...young]) await store.appendEvent(p);
  for (const p of old.slice(0, 20)) await store.updateEvent(p.id, delivered);
  for (const p of old.slice(20, 30)) await store.updateEvent(p.id, failed);
  for (const p of young.slice(0, 5)) await store.updateEvent(p.id, delivered);
  await store.appendEvent({
    ...events(T0, 1)[0]!,
    id: events(T0 + 1, 1)[0]!.id,
    body: Buffer.alloc(0),
    rejected: { reason: 'signature_mismatch', size: 10 },
  });

  assert.equal(await store.removeFinishedBefore(T0 + 5_000), 31);
  for (const p of old.slice(0, 30)) {
    assert.equal(await store.getEvent(p.id), undefined);
    await assert.rejects(store.readPayload(p.id), /no event/);
  }
  for (const p of [...old.slice(30), ...young]) assert.ok(await store.getEvent(p.id), p.id);
  assert.deepEqual(await store.countByStatus(), {
    queued: 15,
    delivering: 0,
    delivered: 5,
    failed: 0,
    rejected: 0,
    filtered: 0,
  });
  assert.equal((await store.listEvents({ limit: 100 })).events.length, 20);
  assert.equal((await store.listEvents({ limit: 100, status: 'delivered' })).events.length, 5);
  assert.equal((await store.listEvents({ limit: 100, channelId: 'ch_r' })).events.length, 20);
  // Nothing is left in an index either: after a reopen the counts are read from the indexes.
  await store.close();
  const again = await openStore(t, dir);
  assert.equal((await again.countByStatus()).queued, 15);
  assert.equal((await again.countByStatus()).delivered, 5);
  assert.equal(await again.removeFinishedBefore(T0 + 5_000), 0, 'nothing more to remove');
  assert.equal(await again.removeFinishedBefore(T0 + 20_000), 5);
  assert.equal(
    (await again.listEvents({ limit: 100, status: 'queued' })).events.length,
    15,
    'queued events are never removed',
  );
});

test('under steady traffic with retention the file stops growing: freed pages are reused', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const sizes: number[] = [];
  for (let round = 0; round < 12; round++) {
    const at = T0 + round * 1_000;
    const batch = events(at, 300);
    await Promise.all(batch.map((p) => store.appendEvent(p)));
    await Promise.all(batch.map((p) => store.updateEvent(p.id, delivered)));
    // Keep two rounds: everything older goes.
    await store.removeFinishedBefore(at - 1_500);
    sizes.push((await stat(path.join(dir, EVENTS_FILE))).size);
  }
  assert.equal((await store.countByStatus()).delivered, 600);
  const settled = sizes[5]!;
  assert.ok(
    sizes[11]! <= settled * 1.25,
    `file size by round: ${sizes.join(', ')} (the last should not exceed round 6 by much)`,
  );
});

test('dedup keys outlive their events for the replay window, then are pruned', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const [keyed] = events(T0, 1, { dedupKey: 'k'.repeat(43) });
  await store.appendEvent(keyed!);
  await store.updateEvent(keyed!.id, delivered);
  assert.equal(await store.removeFinishedBefore(T0 + 1), 1);
  assert.equal(await store.findByDedupKey('ch_r', 'k'.repeat(43), 0), keyed!.id, 'still known');
  // A newer key, past the window: the old one is pruned by the next sweep.
  const [later] = events(T0 + MAX_DEDUP_AGE_MS + 1, 1, { dedupKey: 'l'.repeat(43) });
  await store.appendEvent(later!);
  await store.removeFinishedBefore(T0 + 1);
  assert.equal(await store.findByDedupKey('ch_r', 'k'.repeat(43), 0), undefined);
  assert.equal(await store.findByDedupKey('ch_r', 'l'.repeat(43), 0), later!.id);
});
