import assert from 'node:assert/strict';
import {
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Journal, LAZY_FLUSH_MS, type Location } from '../../server/store/journal.ts';
import { PosternError } from '../../shared/errors.ts';

const HEADER = 8;
const BIG = 64 * 1024 * 1024;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'postern-journal-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Replayed {
  payloads: Buffer[];
  locations: Location[];
}

/** Opens a journal and collects what it replays; closed after the test. */
async function openJournal(
  t: TestContext,
  dir: string,
  segmentBytes = BIG,
): Promise<{ journal: Journal; replayed: Replayed }> {
  const journal = new Journal(dir, { segmentBytes });
  const replayed: Replayed = { payloads: [], locations: [] };
  await journal.open((payload, loc) => {
    // Copy: the replay buffer belongs to the journal.
    replayed.payloads.push(Buffer.from(payload));
    replayed.locations.push(loc);
  });
  t.after(() => journal.close());
  return { journal, replayed };
}

function segmentPath(dir: string, n: number): string {
  return path.join(dir, `${String(n).padStart(10, '0')}.seg`);
}

function payload(i: number, size = 20): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  b.write(`#${i}:`, 0);
  return b;
}

test('a new journal starts segment 1, empty', async (t) => {
  const dir = path.join(await tempDir(t), 'journal');
  const { replayed } = await openJournal(t, dir);
  assert.deepEqual(replayed.payloads, []);
  assert.deepEqual(await readdir(dir), ['0000000001.seg']);
  assert.equal((await stat(segmentPath(dir, 1))).size, 0);
});

test('append then reopen replays every record in order with its location', async (t) => {
  const dir = await tempDir(t);
  const first = await openJournal(t, dir);
  const records = [
    Buffer.from('first'),
    Buffer.from([0xff, 0x00, 0xfe, 0x80]),
    Buffer.alloc(5_000, 7),
  ];
  const locations: Location[] = [];
  for (const r of records) locations.push(await first.journal.append(r));
  assert.deepEqual(locations, [
    { segment: 1, offset: 8, length: 5 },
    { segment: 1, offset: 8 + 5 + 8, length: 4 },
    { segment: 1, offset: 8 + 5 + 8 + 4 + 8, length: 5_000 },
  ]);
  // Every record has at least its kind byte; an empty one is refused (a zero-length record
  // is how a zero-filled tail would read).
  await assert.rejects(first.journal.append(Buffer.alloc(0)), { code: 'ERR_STORE_WRITE' });
  for (const [i, loc] of locations.entries()) {
    assert.deepEqual(await first.journal.read(loc), records[i]);
  }
  await first.journal.close();

  const second = await openJournal(t, dir);
  assert.deepEqual(second.replayed.payloads, records);
  assert.deepEqual(second.replayed.locations, locations);
  for (const [i, loc] of locations.entries()) {
    assert.deepEqual(await second.journal.read(loc), records[i]);
  }
  assert.equal((await stat(segmentPath(dir, 1))).size, 3 * HEADER + 5 + 4 + 5_000);
});

test('the on-disk record is [u32 length][u32 crc32][payload]', async (t) => {
  const dir = await tempDir(t);
  const { journal } = await openJournal(t, dir);
  await journal.append(Buffer.from('Hello, World!'));
  await journal.close();
  const data = await readFile(segmentPath(dir, 1));
  assert.equal(data.readUInt32BE(0), 13);
  // CRC-32 (IEEE) of "Hello, World!".
  assert.equal(data.readUInt32BE(4), 0xec4ac3d0);
  assert.equal(data.toString('utf8', 8), 'Hello, World!');
});

test('group commit: 500 concurrent appends all resolve and replay in call order', async (t) => {
  const dir = await tempDir(t);
  const first = await openJournal(t, dir);
  // Count writes (the segment is O_DSYNC: one durable write per commit); every FileHandle
  // shares one prototype.
  const probe = await open(path.join(dir, 'probe'), 'w');
  const proto: FileHandle = Object.getPrototypeOf(probe);
  await probe.close();
  await rm(path.join(dir, 'probe'));
  const write = t.mock.method(proto, 'write');
  const records = Array.from({ length: 500 }, (_, i) => payload(i, 10 + (i % 37)));
  const locations = await Promise.all(records.map((r) => first.journal.append(r)));
  assert.equal(locations.length, 500);
  // The first append starts a write at once; the 499 that arrive during it share the next one.
  assert.equal(write.mock.callCount(), 2);
  write.mock.restore();
  // Packed back to back in call order: each offset follows the one before.
  let expected = HEADER;
  for (const [i, loc] of locations.entries()) {
    assert.deepEqual(loc, { segment: 1, offset: expected, length: records[i]!.length });
    expected += records[i]!.length + HEADER;
  }
  const read = await Promise.all(locations.map((loc) => first.journal.read(loc)));
  assert.deepEqual(read, records);
  await first.journal.close();

  const second = await openJournal(t, dir);
  assert.equal(second.replayed.payloads.length, 500);
  assert.deepEqual(second.replayed.payloads, records);
  assert.deepEqual(second.replayed.locations, locations);
});

test('close waits for in-flight appends; appends after close are refused', async (t) => {
  const dir = await tempDir(t);
  const journal = new Journal(dir, { segmentBytes: BIG });
  await journal.open(() => {});
  const pending = Array.from({ length: 50 }, (_, i) => journal.append(payload(i)));
  await journal.close();
  const settled = await Promise.allSettled(pending);
  assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 50);
  await assert.rejects(journal.append(Buffer.from('late')), (err: unknown) => {
    assert.ok(err instanceof PosternError);
    assert.equal(err.code, 'ERR_SHUTTING_DOWN');
    return true;
  });
  const again = await openJournal(t, dir);
  assert.equal(again.replayed.payloads.length, 50);
});

/** Writes three records, returns their locations and the segment size. */
async function threeRecords(t: TestContext, dir: string): Promise<Location[]> {
  const { journal } = await openJournal(t, dir);
  const locs: Location[] = [];
  for (let i = 0; i < 3; i++) locs.push(await journal.append(payload(i, 30)));
  await journal.close();
  return locs;
}

async function assertTailCutAndAppendable(
  t: TestContext,
  dir: string,
  locs: Location[],
): Promise<void> {
  const reopened = await openJournal(t, dir);
  assert.deepEqual(reopened.replayed.payloads, [payload(0, 30), payload(1, 30)]);
  assert.deepEqual(reopened.replayed.locations, locs.slice(0, 2));
  const goodEnd = locs[1]!.offset + locs[1]!.length;
  // The torn tail is cut off on disk, not just skipped.
  assert.equal((await stat(segmentPath(dir, 1))).size, goodEnd);

  const loc = await reopened.journal.append(Buffer.from('after the crash'));
  assert.deepEqual(loc, { segment: 1, offset: goodEnd + HEADER, length: 15 });
  await reopened.journal.close();

  const last = await openJournal(t, dir);
  assert.deepEqual(last.replayed.payloads, [
    payload(0, 30),
    payload(1, 30),
    Buffer.from('after the crash'),
  ]);
  assert.deepEqual(await last.journal.read(loc), Buffer.from('after the crash'));
}

test('a last record cut short mid-payload is cut off on open; appends then work', async (t) => {
  const dir = await tempDir(t);
  const locs = await threeRecords(t, dir);
  await truncate(segmentPath(dir, 1), locs[2]!.offset + 10);
  await assertTailCutAndAppendable(t, dir, locs);
});

test('a last record cut short mid-header is cut off on open', async (t) => {
  const dir = await tempDir(t);
  const locs = await threeRecords(t, dir);
  await truncate(segmentPath(dir, 1), locs[2]!.offset - HEADER + 5);
  await assertTailCutAndAppendable(t, dir, locs);
});

test('a last record whose CRC fails (one flipped byte) is cut off on open', async (t) => {
  const dir = await tempDir(t);
  const locs = await threeRecords(t, dir);
  const file = segmentPath(dir, 1);
  const data = await readFile(file);
  data[locs[2]!.offset + 17]! ^= 0x01;
  await writeFile(file, data);
  await assertTailCutAndAppendable(t, dir, locs);
});

test('a last record whose length field points past the end is cut off on open', async (t) => {
  const dir = await tempDir(t);
  const locs = await threeRecords(t, dir);
  const file = segmentPath(dir, 1);
  const data = await readFile(file);
  data.writeUInt32BE(1_000_000, locs[2]!.offset - HEADER);
  await writeFile(file, data);
  await assertTailCutAndAppendable(t, dir, locs);
});

test('segment rotation: a tiny segmentBytes gives several segments, all replayed', async (t) => {
  const dir = await tempDir(t);
  const first = await openJournal(t, dir, 100);
  const records = Array.from({ length: 20 }, (_, i) => payload(i, 40));
  const locations: Location[] = [];
  for (const r of records) locations.push(await first.journal.append(r));
  // 48-byte records: a segment is sealed after the commit that takes it to 100 bytes or more,
  // so each holds 3 records: 20 records fill 6 segments and 2 records of a 7th.
  assert.deepEqual(
    locations.map((l) => l.segment),
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7],
  );
  assert.deepEqual(
    locations.map((l) => l.offset),
    [8, 56, 104, 8, 56, 104, 8, 56, 104, 8, 56, 104, 8, 56, 104, 8, 56, 104, 8, 56],
  );
  for (const [i, loc] of locations.entries()) {
    assert.deepEqual(await first.journal.read(loc), records[i]);
  }
  await first.journal.close();

  assert.deepEqual((await readdir(dir)).sort(), [
    '0000000001.seg',
    '0000000002.seg',
    '0000000003.seg',
    '0000000004.seg',
    '0000000005.seg',
    '0000000006.seg',
    '0000000007.seg',
  ]);
  for (let n = 1; n <= 6; n++) assert.equal((await stat(segmentPath(dir, n))).size, 144);
  assert.equal((await stat(segmentPath(dir, 7))).size, 96);

  const second = await openJournal(t, dir, 100);
  assert.deepEqual(second.replayed.payloads, records);
  assert.deepEqual(second.replayed.locations, locations);
  for (const [i, loc] of locations.entries()) {
    assert.deepEqual(await second.journal.read(loc), records[i]);
  }
  // Appends continue in the last segment, then rotate again.
  const next = await second.journal.append(payload(20, 40));
  assert.deepEqual(next, { segment: 7, offset: 104, length: 40 });
  const after = await second.journal.append(payload(21, 40));
  assert.deepEqual(after, { segment: 8, offset: 8, length: 40 });
});

test('rotation with concurrent appends: every record replays in order', async (t) => {
  const dir = await tempDir(t);
  const first = await openJournal(t, dir, 1_000);
  const records = Array.from({ length: 300 }, (_, i) => payload(i, 50));
  const waves: Location[] = [];
  for (let w = 0; w < 10; w++) {
    const batch = records.slice(w * 30, w * 30 + 30);
    waves.push(...(await Promise.all(batch.map((r) => first.journal.append(r)))));
  }
  await first.journal.close();
  const segments = (await readdir(dir)).length;
  assert.ok(segments >= 5, `only ${segments} segments for 300 × 58 bytes with 1,000-byte bound`);
  const second = await openJournal(t, dir, 1_000);
  assert.equal(second.replayed.payloads.length, 300);
  assert.deepEqual(second.replayed.payloads, records);
  assert.deepEqual(second.replayed.locations, waves);
});

async function rotated(t: TestContext, dir: string): Promise<Location[]> {
  const { journal } = await openJournal(t, dir, 100);
  const locs: Location[] = [];
  for (let i = 0; i < 8; i++) locs.push(await journal.append(payload(i, 40)));
  await journal.close();
  assert.deepEqual(
    locs.map((l) => l.segment),
    [1, 1, 1, 2, 2, 2, 3, 3],
  );
  return locs;
}

async function assertCorrupt(dir: string): Promise<void> {
  const journal = new Journal(dir, { segmentBytes: 100 });
  let replayed = 0;
  try {
    await assert.rejects(
      journal.open(() => {
        replayed++;
      }),
      (err: unknown) => {
        assert.ok(err instanceof PosternError);
        assert.equal(err.code, 'ERR_STORE_CORRUPT');
        assert.match(err.message, /0000000002\.seg/);
        return true;
      },
    );
  } finally {
    await journal.close();
  }
  // Segment 1 was intact and replayed before the damage was found.
  assert.ok(replayed >= 3, `replayed ${replayed}`);
}

test('a damaged record in a sealed segment makes open() fail with ERR_STORE_CORRUPT', async (t) => {
  const dir = await tempDir(t);
  const locs = await rotated(t, dir);
  const file = segmentPath(dir, 2);
  const data = await readFile(file);
  data[locs[4]!.offset + 3]! ^= 0x80;
  await writeFile(file, data);
  await assertCorrupt(dir);
  // Nothing was cut off: the damaged segment is left as it was, for an operator to look at.
  assert.deepEqual(await readFile(file), data);
});

test('a sealed segment cut short makes open() fail with ERR_STORE_CORRUPT', async (t) => {
  const dir = await tempDir(t);
  const locs = await rotated(t, dir);
  await truncate(segmentPath(dir, 2), locs[5]!.offset + 1);
  await assertCorrupt(dir);
  assert.equal((await stat(segmentPath(dir, 2))).size, locs[5]!.offset + 1);
});

test('files that are not segments are ignored', async (t) => {
  const dir = await tempDir(t);
  const { journal } = await openJournal(t, dir);
  await journal.append(Buffer.from('one'));
  await journal.close();
  await writeFile(path.join(dir, 'notes.txt'), 'garbage');
  await writeFile(path.join(dir, '12.seg'), 'garbage');
  const again = await openJournal(t, dir);
  assert.deepEqual(again.replayed.payloads, [Buffer.from('one')]);
});

test('a lazy record rides along with the next durable commit, in append order', async (t) => {
  const dir = await tempDir(t);
  const { journal } = await openJournal(t, dir);
  let lazyDone = false;
  const lazy = journal.append(payload(1), { lazy: true }).then((loc) => {
    lazyDone = true;
    return loc;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lazyDone, false, 'a lazy record alone does not start a commit');
  const durable = await journal.append(payload(2));
  const lazyLoc = await lazy;
  assert.ok(lazyLoc.offset < durable.offset, 'written first, as appended first');
  assert.equal(lazyLoc.segment, durable.segment);
  await journal.close();
  const again = await openJournal(t, dir);
  assert.deepEqual(again.replayed.payloads, [payload(1), payload(2)]);
});

test('a lazy record alone is written after LAZY_FLUSH_MS, and close() flushes one', async (t) => {
  const dir = await tempDir(t);
  const { journal } = await openJournal(t, dir);
  const started = performance.now();
  await journal.append(payload(1), { lazy: true });
  assert.ok(performance.now() - started >= LAZY_FLUSH_MS - 5, 'waited for the flush timer');
  const pending = journal.append(payload(2), { lazy: true });
  await journal.close();
  await pending;
  const again = await openJournal(t, dir);
  assert.deepEqual(again.replayed.payloads, [payload(1), payload(2)]);
});
