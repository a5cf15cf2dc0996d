/**
 * Converts the journal of an earlier release (`<data-dir>/journal/`, segments of records) into
 * events.mdb, once, at the first start of this release: every event with its latest state, its
 * payload and its dedup key. Idempotent, so a crash halfway is finished by the next start; the
 * journal is renamed only once everything is committed, and kept until the operator deletes it.
 */
import { readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { applyUpdate, initialSummary } from './event-state.ts';
import { commit, putState, type EventDb } from './event-db.ts';
import { Journal, type Location } from './journal.ts';
import { decodeRecord } from './records.ts';
import type { EventSummary } from './types.ts';

export interface ImportLog {
  info(fields: Record<string, unknown>, msg: string): void;
}

const BATCH = 2_000;
/** A progress line at most this often. */
const PROGRESS_MS = 2_000;

export async function importJournal(
  dataDir: string,
  db: EventDb,
  log: ImportLog,
  now: () => number = Date.now,
): Promise<number> {
  const dir = path.join(dataDir, 'journal');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0; // no journal: nothing to convert
  }
  if (!names.some((n) => n.endsWith('.seg'))) return 0;
  const journal = new Journal(dir, { segmentBytes: 64 * 1024 * 1024 });
  const events = new Map<string, { summary: EventSummary; loc: Location; dedup?: string }>();
  const started = now();
  await journal.open((buf, loc) => {
    const record = decodeRecord(buf);
    if (record.kind === 'event') {
      const existing = events.get(record.payload.id);
      // Written twice by a compaction that crashed before deleting the old copy: same event.
      if (existing) existing.loc = loc;
      else {
        const { payload } = record;
        events.set(payload.id, {
          summary: initialSummary(payload),
          loc,
          ...(payload.dedupKey !== undefined && !payload.rejected
            ? { dedup: payload.dedupKey }
            : {}),
        });
      }
    } else {
      const entry = events.get(record.id);
      if (entry) entry.summary = applyUpdate(entry.summary, record.update);
    }
  });
  const total = events.size;
  log.info(
    { events: total, journal: dir },
    `converting the journal of an earlier release: ${total} events`,
  );
  let done = 0;
  let lastProgress = now();
  const all = [...events.values()];
  try {
    for (let i = 0; i < all.length; i += BATCH) {
      const batch = all.slice(i, i + BATCH);
      const records = await Promise.all(batch.map((e) => journal.read(e.loc)));
      await commit(db, () => {
        batch.forEach((e, j) => {
          const { summary } = e;
          db.payloads.putSync(summary.id, records[j]!);
          putState(db, summary, db.states.get(summary.id));
          if (e.dedup !== undefined) {
            db.dedup.putSync([summary.channelId, e.dedup], [summary.id, summary.receivedAt]);
            db.dedupByTime.putSync([summary.receivedAt, summary.channelId, e.dedup], 1);
          }
        });
      });
      done += batch.length;
      if (now() - lastProgress >= PROGRESS_MS && done < total) {
        lastProgress = now();
        log.info(
          { converted: done, events: total },
          `converting the journal: ${Math.floor((done * 100) / total)} % (${done} of ${total} events)`,
        );
      }
    }
  } finally {
    await journal.close();
  }
  let kept = `${dir}.converted`;
  try {
    await rename(dir, kept);
  } catch {
    kept = `${dir}.converted-${now()}`; // an earlier conversion's copy is still there
    await rename(dir, kept);
  }
  log.info(
    { events: total, ms: now() - started, kept },
    `converted ${total} events into events.mdb; the old journal is kept in ${kept}: delete it once this release runs well`,
  );
  return total;
}
