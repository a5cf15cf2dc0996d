/**
 * The embedded store's events on disk, in LMDB (one memory-mapped file, `<data-dir>/events.mdb`):
 * an existing engine with ordered keys, atomic multi-key transactions and durable commits
 * batched on its own thread, so the relay keeps no index of its own in memory.
 *
 * Layout (named databases of one environment, so one transaction covers them all):
 * - `payloads`: id → the request as ingress captured it (records.ts event layout), immutable;
 * - `states`: id → the event's summary (delivery state), rewritten on each change;
 * - `byStatus` [status, id], `byChannel` [channel, id], `byChannelStatus` [channel, status, id]:
 *   the listing indexes (event ids sort in arrival order, so each range is arrival-ordered);
 * - `pending` [channel, nextAttemptAt, id] and `lanes` [channel, orderKey, id]: the events still
 *   to deliver, by when they are due (claims of unordered channels) and by ordering key (the
 *   oldest of a key is its lane's head, for claims of ordered channels);
 * - `dedup` [channel, key] → [event id, receivedAt] and `dedupByTime` [receivedAt, channel,
 *   key]: replay protection, pruned by age;
 * - `minutes`: minute start → its statistics (minute-stats.ts), changed in the transactions
 *   that append and settle events; no layout change (an older file just has none);
 * - `meta`: the layout version (`layout`), for data written by an earlier release.
 *
 * Commits are fsynced before their promise resolves (`overlappingSync: false`: with it, LMDB
 * resolves at commit and flushes later). `delivering` is never written: after a restart nothing
 * is in flight, so the disk holds such an event as `queued`.
 */
import { constants } from 'node:os';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { PosternError } from '../../shared/errors.ts';
import { addDelta, emptyMinute, type MinuteDelta } from './minute-stats.ts';
import type { EventStatus, EventSummary, MinuteStats } from './types.ts';

export const EVENTS_FILE = 'events.mdb';

export interface EventDb {
  root: RootDatabase;
  payloads: Database<Buffer, string>;
  states: Database<EventSummary, string>;
  byStatus: Database<1, Key>;
  byChannel: Database<1, Key>;
  byChannelStatus: Database<1, Key>;
  dedup: Database<[string, number], Key>;
  dedupByTime: Database<1, Key>;
  pending: Database<1, Key>;
  lanes: Database<1, Key>;
  minutes: Database<MinuteStats, number>;
  meta: Database<number, string>;
}

/** The layout this code writes: 2 added `pending` and `lanes`. */
export const LAYOUT = 2;

export function openEventDb(file: string): EventDb {
  const root = open({
    path: file,
    // 8 KiB pages hold several ~1.5 KB records; the default 4 KiB wastes most of each page.
    pageSize: 8192,
    overlappingSync: false,
    maxDbs: 16,
  });
  const index = (name: string) => root.openDB<1, Key>({ name, encoding: 'msgpack' });
  return {
    root,
    payloads: root.openDB<Buffer, string>({ name: 'payloads', encoding: 'binary' }),
    states: root.openDB<EventSummary, string>({ name: 'states', encoding: 'msgpack' }),
    byStatus: index('byStatus'),
    byChannel: index('byChannel'),
    byChannelStatus: index('byChannelStatus'),
    dedup: root.openDB<[string, number], Key>({ name: 'dedup', encoding: 'msgpack' }),
    dedupByTime: index('dedupByTime'),
    pending: index('pending'),
    lanes: index('lanes'),
    minutes: root.openDB<MinuteStats, number>({ name: 'minutes', encoding: 'msgpack' }),
    meta: root.openDB<number, string>({ name: 'meta', encoding: 'msgpack' }),
  };
}

/** The status an event is stored under (`delivering` lives in memory only). */
export function storedStatus(status: EventStatus): EventStatus {
  return status === 'delivering' ? 'queued' : status;
}

/**
 * Writes an event's state and moves its index entries; runs inside a write transaction. `was`
 * is the state on disk before (undefined for a new event).
 */
export function putState(db: EventDb, next: EventSummary, was: EventSummary | undefined): void {
  const status = storedStatus(next.status);
  db.states.putSync(next.id, { ...next, status });
  const before = was === undefined ? undefined : storedStatus(was.status);
  if (was !== undefined && before === 'queued') {
    if (status === 'queued' && was.nextAttemptAt === next.nextAttemptAt) return;
    unindexPending(db, was);
  }
  if (status === 'queued') indexPending(db, next);
  if (before === status) return;
  if (before !== undefined) {
    db.byStatus.removeSync([before, next.id]);
    db.byChannelStatus.removeSync([next.channelId, before, next.id]);
  } else {
    db.byChannel.putSync([next.channelId, next.id], 1);
  }
  db.byStatus.putSync([status, next.id], 1);
  db.byChannelStatus.putSync([next.channelId, status, next.id], 1);
}

function indexPending(db: EventDb, e: EventSummary): void {
  db.pending.putSync([e.channelId, e.nextAttemptAt, e.id], 1);
  db.lanes.putSync([e.channelId, e.orderKey, e.id], 1);
}

function unindexPending(db: EventDb, e: EventSummary): void {
  db.pending.removeSync([e.channelId, e.nextAttemptAt, e.id]);
  db.lanes.removeSync([e.channelId, e.orderKey, e.id]);
}

/** Adds deltas to their minutes; runs inside a write transaction. */
export function addMinutes(db: EventDb, deltas: readonly MinuteDelta[]): void {
  const changed = new Map<number, MinuteStats>();
  for (const d of deltas) {
    let m = changed.get(d.minute);
    if (!m) {
      m = db.minutes.get(d.minute) ?? emptyMinute(d.minute);
      changed.set(d.minute, m);
    }
    addDelta(m, d);
  }
  for (const m of changed.values()) db.minutes.putSync(m.minute, m);
}

/** Removes an event and its index entries; runs inside a write transaction. */
export function removeEvent(db: EventDb, id: string): EventSummary | undefined {
  const was = db.states.get(id);
  if (!was) return undefined;
  db.states.removeSync(id);
  db.payloads.removeSync(id);
  db.byStatus.removeSync([was.status, id]);
  db.byChannel.removeSync([was.channelId, id]);
  db.byChannelStatus.removeSync([was.channelId, was.status, id]);
  if (was.status === 'queued') unindexPending(db, was);
  return was;
}

/**
 * Brings data written by an earlier layout up to this one (layout 1 lacked `pending` and
 * `lanes`: they are built from the queued events). Returns how many events it indexed.
 */
export async function upgradeLayout(db: EventDb): Promise<number> {
  const layout = db.meta.get('layout') ?? 1;
  if (layout > LAYOUT) {
    throw new PosternError(
      'ERR_STORE_CORRUPT',
      `${EVENTS_FILE} has layout ${layout}, newer than this relay knows (${LAYOUT}): run a newer release`,
    );
  }
  if (layout === LAYOUT) return 0;
  let indexed = 0;
  await commit(db, () => {
    for (const key of db.byStatus.getKeys({ start: ['queued'], end: ['queued', '\uffff'] })) {
      const e = db.states.get(String((key as unknown[])[1]));
      if (e) {
        indexPending(db, e);
        indexed++;
      }
    }
    db.meta.putSync('layout', LAYOUT);
  });
  return indexed;
}

/**
 * Runs `write` in the next batched write transaction; resolves once it is durable. A failed
 * commit rejects with LMDB's error, whose own `commitError` promise is handled here (left
 * alone, it would end the process as an unhandled rejection).
 */
export function commit<T>(db: EventDb, write: () => T): Promise<T> {
  return db.root.transaction(write).catch(async (err: unknown) => {
    let cause = err;
    const detail = (err as { commitError?: Promise<unknown> }).commitError;
    if (detail)
      cause = await detail.then(
        () => err,
        (e: unknown) => e,
      );
    throw new PosternError(
      'ERR_STORE_WRITE',
      `could not commit to ${EVENTS_FILE}: ${describe(cause)}`,
      {
        cause,
      },
    );
  });
}

/** An LMDB error in words, with the errno's name when it has one (EFBIG, ENOSPC, EIO). */
function describe(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const name =
    typeof code === 'number'
      ? Object.entries(constants.errno).find(([, n]) => n === code)?.[0]
      : undefined;
  const message = err instanceof Error ? err.message.split(':')[0]! : String(err);
  return name ? `${message} (${name})` : message;
}

/**
 * LMDB leaves one internal promise of a failed commit without a handler (every caller's own
 * promise is rejected too, and answered: ingress says 503). That one is dropped here; any other
 * unhandled rejection is thrown again, so it still ends the process as Node's default would.
 * Returns the function that removes the handler.
 */
export function absorbFailedCommits(): () => void {
  const onUnhandled = (reason: unknown) => {
    if ((reason as { commitError?: unknown } | null)?.commitError !== undefined) return;
    throw reason;
  };
  process.on('unhandledRejection', onUnhandled);
  return () => void process.off('unhandledRejection', onUnhandled);
}
