/**
 * Retention and compaction of the embedded store: finished events past their age are
 * forgotten, sealed segments nothing points into are deleted, mostly dead ones are rewritten,
 * and disk use stays bounded under steady traffic. Queued events are never removed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { Journal } from '../../server/store/journal.ts';
import { encodeEventRecord, encodeUpdateRecord } from '../../server/store/records.ts';
import type { Attempt, EventPayload } from '../../server/store/types.ts';

const T0 = 1_700_000_000_000;
const SEGMENT = 8 * 1024;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'postern-retention-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: TestContext, dataDir: string): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir, segmentBytes: SEGMENT });
  await store.open();
  t.after(() => store.close());
  return store;
}

function payload(i: number): EventPayload {
  return {
    id: `evt_${String(i).padStart(26, '0')}`,
    channelId: 'ch_r',
    receivedAt: T0 + i,
    method: 'POST',
    path: `/n/${i}`,
    query: '',
    headers: [['content-type', 'application/octet-stream']],
    originalUrl: `https://relay.example.com/h/ch_r/n/${i}`,
    remoteAddress: '203.0.113.1',
    body: Buffer.alloc(1024, i & 0xff),
  };
}

async function segmentFiles(dataDir: string): Promise<string[]> {
  return (await readdir(path.join(dataDir, 'journal'))).filter((f) => f.endsWith('.seg')).sort();
}

async function journalBytes(dataDir: string): Promise<number> {
  let total = 0;
  for (const f of await segmentFiles(dataDir))
    total += (await stat(path.join(dataDir, 'journal', f))).size;
  return total;
}

const delivered = (n: number) => ({
  status: 'delivered' as const,
  attemptCount: n,
  nextAttemptAt: 0,
});

test('finished events past the cutoff go, and so do the segments they filled', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 1; i <= 60; i++) await store.appendEvent(payload(i));
  for (let i = 1; i <= 60; i++) await store.updateEvent(payload(i).id, delivered(1));
  const before = await segmentFiles(dir);
  assert.ok(before.length >= 8, `${before.length} segments before`);

  assert.equal(
    await store.removeFinishedBefore(T0 + 31),
    30,
    'only those received before the cutoff',
  );
  assert.equal(store.listEvents({ limit: 500 }).events.length, 30);
  assert.equal(store.getEvent(payload(30).id), undefined);
  assert.ok(store.getEvent(payload(31).id));

  assert.equal(await store.removeFinishedBefore(T0 + 1_000), 30);
  assert.deepEqual(store.countByStatus(), {
    queued: 0,
    delivering: 0,
    delivered: 0,
    failed: 0,
    rejected: 0,
    filtered: 0,
  });
  const after = await segmentFiles(dir);
  assert.equal(after.length, 1, `only the active segment is left (was ${before.length})`);

  await store.close();
  const again = await openStore(t, dir);
  assert.equal(
    again.listEvents({ limit: 500 }).events.length,
    0,
    'nothing comes back after a restart',
  );
});

test('queued events are never removed; compaction moves them forward with their state', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  for (let i = 1; i <= 60; i++) await store.appendEvent(payload(i));
  const failedOnce: Attempt = {
    at: T0 + 500,
    agentId: 'ag_x',
    outcome: 'failed',
    status: 500,
    durationMs: 12,
    error: 'app answered 500',
  };
  const keep = [payload(5).id, payload(33).id];
  for (let i = 1; i <= 60; i++) {
    const id = payload(i).id;
    if (keep.includes(id)) {
      await store.updateEvent(id, {
        status: 'queued',
        attemptCount: 1,
        nextAttemptAt: T0 + 9_000,
        attempt: failedOnce,
      });
    } else {
      await store.updateEvent(id, delivered(1));
    }
  }
  const before = await journalBytes(dir);
  assert.equal(await store.removeFinishedBefore(T0 + 10_000), 58);
  const after = await journalBytes(dir);
  assert.ok(after < before / 4, `journal shrank from ${before} to ${after} bytes`);

  await store.close();
  const again = await openStore(t, dir);
  const left = again.listEvents({ limit: 500 }).events;
  assert.deepEqual(left.map((e) => e.id).sort(), [...keep].sort());
  for (const id of keep) {
    const e = again.getEvent(id)!;
    assert.equal(e.status, 'queued');
    assert.equal(e.attemptCount, 1);
    assert.equal(e.nextAttemptAt, T0 + 9_000);
    assert.deepEqual(e.attempts, [failedOnce]);
    const p = await again.readPayload(id);
    assert.deepEqual(p.body, payload(Number(id.slice(4))).body);
  }
});

test('disk use stays bounded under steady traffic with retention', async (t) => {
  const dir = await tempDir(t);
  const store = await openStore(t, dir);
  const sizes: number[] = [];
  let n = 0;
  for (let round = 0; round < 12; round++) {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await store.appendEvent(payload(++n))).id);
    await Promise.all(ids.map((id) => store.updateEvent(id, delivered(1))));
    // Keep roughly the last round: everything received before it is past retention.
    await store.removeFinishedBefore(T0 + n - 24);
    sizes.push(await journalBytes(dir));
  }
  const bound = 4 * SEGMENT + 26 * 1200;
  assert.ok(
    Math.max(...sizes.slice(2)) < bound,
    `journal sizes ${sizes.join(', ')} stay under ${bound}`,
  );
  assert.equal(store.listEvents({ limit: 500 }).events.length, 25);
});

test('an event written twice (compaction crashed before deleting) reads back once, latest state', async (t) => {
  const dir = await tempDir(t);
  const journal = new Journal(path.join(dir, 'journal'), { segmentBytes: SEGMENT });
  await journal.open(() => undefined);
  const p = payload(7);
  await journal.append(encodeEventRecord(p));
  await journal.append(
    encodeUpdateRecord(p.id, { status: 'queued', attemptCount: 2, nextAttemptAt: T0 }),
  );
  await journal.append(encodeEventRecord(p));
  await journal.append(
    encodeUpdateRecord(p.id, {
      status: 'queued',
      attemptCount: 2,
      nextAttemptAt: T0,
      attempts: [],
    }),
  );
  await journal.close();
  const store = await openStore(t, dir);
  const events = store.listEvents({ limit: 10 }).events;
  assert.equal(events.length, 1);
  assert.equal(events[0]!.attemptCount, 2);
  assert.deepEqual((await store.readPayload(p.id)).body, p.body);
  assert.deepEqual(
    store.pendingEvents().map((e) => e.id),
    [p.id],
  );
});
