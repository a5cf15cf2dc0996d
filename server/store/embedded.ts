/**
 * The embedded store: control-plane state in one lowdb document, events in LMDB (see
 * event-db.ts). The process holds only what is not on disk yet: the states of changes whose
 * commit is under way (so that a change is visible at once), which events are being delivered,
 * and the counts by status. Memory does not grow with the backlog or the history, and opening
 * reads no event.
 */
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { PosternError } from '../../shared/errors.ts';
import { eventIdFloor } from '../ids.ts';
import { ControlDocument } from './control.ts';
import { openDataDir, type DataDirOptions, type StoreLog } from './data-dir.ts';
import {
  absorbFailedCommits,
  commit,
  EVENTS_FILE,
  openEventDb,
  putState,
  removeEvent,
  storedStatus,
  type EventDb,
} from './event-db.ts';
import { applyUpdate, initialSummary } from './event-state.ts';
import { importJournal } from './journal-import.ts';
import type { DataDirLock } from './lock.ts';
import { decodeRecord, encodeEventRecord, STATUSES } from './records.ts';
import type { SecretsKeySource } from './secrets-key.ts';
import type {
  ControlState,
  EventFilter,
  EventPayload,
  EventStatus,
  EventSummary,
  EventUpdate,
  Store,
} from './types.ts';

export { MAX_ATTEMPTS_KEPT } from './event-state.ts';

export interface EmbeddedStoreOptions {
  dataDir: string;
  /** The key that encrypts channel secrets at rest. Default: `<data-dir>/secrets.key`. */
  secretsKey?: SecretsKeySource;
  /** Start even if the key cannot open the secrets: those channels then refuse every request. */
  forgetLostSecrets?: boolean;
  /** Warnings about the data dir (permissions tightened, secrets encrypted, a stale lock). */
  logger?: StoreLog;
}

const SILENT: StoreLog = { info() {}, warn() {} };

/** Refused requests kept per channel (metadata only); older ones are forgotten first. */
export const MAX_REJECTED_PER_CHANNEL = 1_000;

/** Dedup keys are kept this long after the newest one (a day for body-only signers, + margin). */
export const MAX_DEDUP_AGE_MS = 25 * 3_600_000;

/** Finished events removed per retention transaction. */
const REMOVE_BATCH = 1_000;

const FINISHED: readonly EventStatus[] = ['delivered', 'failed', 'rejected', 'filtered'];
/** Above every event id: the end of a range of ids. */
const TOP = '\uffff';

/** Longest a lazy change waits for a commit to ride along with. */
export const LAZY_FLUSH_MS = 50;

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Lazy {
  states: EventSummary[];
  waiters: Waiter[];
}

/** Writes changed states of events still stored; runs inside a write transaction. */
function writeStates(db: EventDb, states: readonly EventSummary[]): void {
  for (const next of states) {
    const was = db.states.get(next.id);
    if (was) putState(db, next, was); // removed meanwhile (retention): nothing to write
  }
}

function settle(lazy: Lazy, err: unknown): void {
  for (const w of lazy.waiters) {
    if (err === null) w.resolve();
    else w.reject(err);
  }
}

export class EmbeddedStore implements Store {
  readonly #control: ControlDocument;
  readonly #atRest: DataDirOptions;
  #lock: DataDirLock | null = null;
  #db: EventDb | null = null;
  #unabsorb: () => void = () => undefined;
  /** States changed whose commit is under way, so that reads see a change at once. */
  readonly #overlay = new Map<string, EventSummary>();
  /** Events handed to an agent and not acknowledged: `delivering`, in memory only. */
  readonly #delivering = new Set<string>();
  readonly #listeners = new Set<(event: EventSummary) => void>();
  readonly #counts = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<EventStatus, number>;
  /** Lazy changes waiting for a commit to ride along with (see updateEvent). */
  readonly #lazy = new Map<string, EventSummary>();
  #lazyWaiters: Waiter[] = [];
  #lazyTimer: NodeJS.Timeout | null = null;
  /** Refusals stored per channel, to keep them bounded (loaded on a channel's first one). */
  readonly #rejectedCount = new Map<string, number>();
  /** The newest dedup key's time: keys older than it by MAX_DEDUP_AGE_MS are pruned. */
  #newestDedupAt = 0;

  constructor(opts: EmbeddedStoreOptions) {
    this.#atRest = {
      dataDir: opts.dataDir,
      secretsKey: opts.secretsKey ?? { kind: 'data-dir' },
      forgetLostSecrets: opts.forgetLostSecrets ?? false,
      log: opts.logger ?? SILENT,
    };
    this.#control = new ControlDocument(opts.dataDir);
  }

  async open(): Promise<void> {
    // Locked before anything is read: a second relay on this dir must not even look at it.
    const lock = await openDataDir(this.#atRest, this.#control);
    const file = path.join(this.#atRest.dataDir, EVENTS_FILE);
    try {
      this.#db = openEventDb(file);
      this.#unabsorb = absorbFailedCommits();
      // LMDB creates its files with the process umask; the data dir is owner-only.
      await chmod(file, 0o600);
      await chmod(`${file}-lock`, 0o600);
      await importJournal(this.#atRest.dataDir, this.#db, this.#atRest.log);
    } catch (err) {
      await this.#db?.root.close();
      this.#db = null;
      this.#unabsorb();
      await lock.release();
      throw err;
    }
    this.#lock = lock;
    const db = this.#db;
    for (const status of STATUSES) {
      this.#counts[status] = db.byStatus.getKeysCount({ start: [status], end: [status, TOP] });
    }
    for (const key of db.dedupByTime.getKeys({ reverse: true, limit: 1 })) {
      this.#newestDedupAt = Number((key as unknown[])[0]);
    }
  }

  async close(): Promise<void> {
    if (this.#db) await this.#flushLazy();
    const db = this.#db;
    this.#db = null;
    if (db) {
      await db.root.flushed;
      await db.root.close();
    }
    this.#unabsorb();
    await this.#lock?.release();
    this.#lock = null;
  }

  get #events(): EventDb {
    if (!this.#db) throw new PosternError('ERR_UNAVAILABLE', 'the store is not open');
    return this.#db;
  }

  control(): Readonly<ControlState> {
    return this.#control.state;
  }

  updateControl(change: (state: ControlState) => void): Promise<void> {
    return this.#control.update(change);
  }

  async appendEvent(payload: EventPayload): Promise<EventSummary> {
    const db = this.#events;
    const summary = initialSummary(payload);
    const record = encodeEventRecord(payload);
    const dedupKey = payload.rejected ? undefined : payload.dedupKey;
    let forgotten: string | undefined;
    if (payload.rejected) this.#countRejected(payload.channelId);
    let lazy: Lazy = { states: [], waiters: [] };
    const committed = commit(db, () => {
      // Delivery outcomes waiting for a commit ride along with this one.
      lazy = this.#takeLazy();
      writeStates(db, lazy.states);
      db.payloads.putSync(payload.id, record);
      putState(db, summary, undefined);
      if (dedupKey !== undefined) {
        db.dedup.putSync([payload.channelId, dedupKey], [payload.id, payload.receivedAt]);
        db.dedupByTime.putSync([payload.receivedAt, payload.channelId, dedupKey], 1);
      }
      if (payload.rejected) forgotten = this.#boundRejected(db, payload.channelId);
    });
    await committed.then(
      () => settle(lazy, null),
      (err: unknown) => {
        settle(lazy, err);
        throw err;
      },
    );
    this.#counts[summary.status]++;
    if (forgotten !== undefined) this.#counts.rejected--;
    if (dedupKey !== undefined)
      this.#newestDedupAt = Math.max(this.#newestDedupAt, payload.receivedAt);
    this.#emit(summary);
    return summary;
  }

  /**
   * Keeps at most MAX_REJECTED_PER_CHANNEL refusals of a channel; returns the one dropped. Runs
   * in the write transaction; the count is kept in memory (counting keys inside an LMDB
   * transaction breaks the cursors of later reads in it).
   */
  #boundRejected(db: EventDb, channelId: string): string | undefined {
    const n = (this.#rejectedCount.get(channelId) ?? 0) + 1;
    this.#rejectedCount.set(channelId, n);
    if (n <= MAX_REJECTED_PER_CHANNEL) return undefined;
    const range = { start: [channelId, 'rejected'], end: [channelId, 'rejected', TOP], limit: 1 };
    const [oldest] = Array.from(db.byChannelStatus.getKeys(range));
    if (oldest === undefined) return undefined;
    const id = String((oldest as unknown[])[2]);
    removeEvent(db, id);
    this.#rejectedCount.set(channelId, n - 1);
    return id;
  }

  /** Loads a channel's count of refusals before its first one is added (outside transactions). */
  #countRejected(channelId: string): void {
    if (this.#rejectedCount.has(channelId)) return;
    const range = { start: [channelId, 'rejected'], end: [channelId, 'rejected', TOP] };
    this.#rejectedCount.set(channelId, this.#events.byChannelStatus.getKeysCount(range));
  }

  async updateEvent(
    id: string,
    update: EventUpdate,
    opts: { lazy?: boolean } = {},
  ): Promise<EventSummary> {
    const db = this.#events;
    const current = this.#overlay.get(id) ?? db.states.get(id);
    if (!current) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    const before = this.#effective(current);
    const next = applyUpdate(current, update);
    if (next.status !== 'queued') this.#delivering.delete(id);
    this.#counts[before]--;
    this.#counts[this.#effective(next)]++;
    // Memory first, so that dispatch sees one consistent state; disk follows. Losing the
    // change in a crash only means the event is offered again: at least once, never lost.
    this.#overlay.set(id, next);
    this.#emit(this.#view(next));
    if (opts.lazy) {
      await new Promise<void>((resolve, reject) => {
        this.#lazy.set(id, next);
        this.#lazyWaiters.push({ resolve, reject });
        this.#lazyTimer ??= setTimeout(() => void this.#flushLazy(), LAZY_FLUSH_MS);
      });
    } else {
      // This state supersedes a lazy one still waiting: that one must not be written after it.
      this.#lazy.delete(id);
      await commit(db, () => writeStates(db, [next]));
    }
    if (this.#overlay.get(id) === next) this.#overlay.delete(id);
    return this.#view(next);
  }

  /** Takes the lazy changes waiting, to write them in the transaction being built. */
  #takeLazy(): Lazy {
    if (this.#lazyTimer) clearTimeout(this.#lazyTimer);
    this.#lazyTimer = null;
    const taken = { states: [...this.#lazy.values()], waiters: this.#lazyWaiters };
    this.#lazy.clear();
    this.#lazyWaiters = [];
    return taken;
  }

  /** Commits the lazy changes that found no commit to ride along with in LAZY_FLUSH_MS. */
  async #flushLazy(): Promise<void> {
    this.#lazyTimer = null;
    if (this.#lazy.size === 0 && this.#lazyWaiters.length === 0) return;
    const db = this.#events;
    let taken: Lazy = { states: [], waiters: [] };
    await commit(db, () => {
      taken = this.#takeLazy();
      writeStates(db, taken.states);
    }).then(
      () => settle(taken, null),
      (err: unknown) => settle(taken, err),
    );
  }

  getEvent(id: string): EventSummary | undefined {
    const summary = this.#overlay.get(id) ?? this.#db?.states.get(id);
    return summary && this.#view(summary);
  }

  /** A summary as readers see it: `delivering` while handed to an agent. */
  #view(summary: EventSummary): EventSummary {
    const status = this.#effective(summary);
    return status === summary.status ? summary : { ...summary, status };
  }

  #effective(summary: EventSummary): EventStatus {
    return summary.status === 'queued' && this.#delivering.has(summary.id)
      ? 'delivering'
      : summary.status;
  }

  async findByDedupKey(
    channelId: string,
    dedupKey: string,
    since: number,
  ): Promise<string | undefined> {
    const seen = this.#events.dedup.get([channelId, dedupKey]);
    return seen && seen[1] >= since ? seen[0] : undefined;
  }

  /** Marks an event as handed to an agent or back in the queue; memory only (see event-db.ts). */
  markDelivering(id: string, delivering: boolean): void {
    const summary = this.#overlay.get(id) ?? this.#db?.states.get(id);
    if (!summary || summary.status !== 'queued') {
      this.#delivering.delete(id);
      return;
    }
    if (delivering === this.#delivering.has(id)) return;
    if (delivering) this.#delivering.add(id);
    else this.#delivering.delete(id);
    this.#counts.queued += delivering ? -1 : 1;
    this.#counts.delivering += delivering ? 1 : -1;
    this.#emit(this.#view(summary));
  }

  subscribe(listener: (event: EventSummary) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(summary: EventSummary): void {
    for (const listener of this.#listeners) listener(summary);
  }

  async readPayload(id: string): Promise<EventPayload> {
    const buf = this.#events.payloads.get(id);
    if (!buf) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    const record = decodeRecord(buf);
    if (record.kind !== 'event') {
      throw new PosternError('ERR_STORE_CORRUPT', `event ${id} is stored as a non-event record`);
    }
    return record.payload;
  }

  listEvents(filter: EventFilter): { events: EventSummary[]; next: string | null } {
    const { before, limit } = filter;
    if (before !== undefined && !this.getEvent(before)) {
      throw new PosternError('ERR_BAD_REQUEST', `unknown cursor ${before}`, { status: 400 });
    }
    const events: EventSummary[] = [];
    if (limit < 1) return { events, next: null };
    for (const id of this.#withOverlay(filter, this.#newestFirst(filter))) {
      const summary = this.getEvent(id);
      if (!summary) continue;
      // The indexes hold what is committed: a change under way is checked against the filter.
      if (filter.channelId !== undefined && summary.channelId !== filter.channelId) continue;
      if (filter.status !== undefined && summary.status !== filter.status) continue;
      if (events.length === limit) return { events, next: events.at(-1)!.id };
      events.push(summary);
    }
    return { events, next: null };
  }

  /**
   * Merges into the indexes' candidates the events whose change is not committed yet (the
   * indexes hold what is): they are few, and a listing must see a change at once too.
   */
  *#withOverlay(filter: EventFilter, indexed: Iterable<string>): Iterable<string> {
    const below = filter.before ?? TOP;
    const late = [...this.#overlay.values()]
      .filter(
        (e) =>
          e.id < below &&
          (filter.channelId === undefined || e.channelId === filter.channelId) &&
          (filter.status === undefined || this.#effective(e) === filter.status),
      )
      .map((e) => e.id)
      .sort()
      .reverse();
    let i = 0;
    const seen = new Set<string>();
    for (const id of indexed) {
      // Both streams run newest first: yield the late ones above this id, each once.
      for (; i < late.length && late[i]! >= id; i++) {
        if (late[i] === id) continue;
        seen.add(late[i]!);
        yield late[i]!;
      }
      if (!seen.has(id)) yield id;
    }
    for (; i < late.length; i++) if (!seen.has(late[i]!)) yield late[i]!;
  }

  /** Candidate ids for a listing, newest first, below the cursor. */
  *#newestFirst(filter: EventFilter): Iterable<string> {
    const db = this.#events;
    const below = filter.before ?? TOP;
    const { channelId, status } = filter;
    if (status === 'delivering') {
      const ids = [...this.#delivering].filter((id) => id < below).sort();
      for (let i = ids.length - 1; i >= 0; i--) yield ids[i]!;
      return;
    }
    const range = <K extends unknown[]>(prefix: K, at: number) => ({
      start: [...prefix, below],
      end: prefix,
      reverse: true,
      pick: (key: unknown) => String((key as unknown[])[at]),
    });
    const stored = status === undefined ? undefined : storedStatus(status);
    const source =
      channelId !== undefined && stored !== undefined
        ? { db: db.byChannelStatus, ...range([channelId, stored], 2) }
        : channelId !== undefined
          ? { db: db.byChannel, ...range([channelId], 1) }
          : stored !== undefined
            ? { db: db.byStatus, ...range([stored], 1) }
            : null;
    if (source === null) {
      for (const id of db.states.getKeys({ start: below, reverse: true })) {
        if (id !== below) yield id;
      }
      return;
    }
    for (const key of source.db.getKeys({ start: source.start, end: source.end, reverse: true })) {
      const id = source.pick(key);
      if (id !== below) yield id;
    }
  }

  pendingEvents(): EventSummary[] {
    const db = this.#events;
    const out: EventSummary[] = [];
    const seen = new Set<string>();
    for (const key of db.byStatus.getKeys({ start: ['queued'], end: ['queued', TOP] })) {
      const id = String((key as unknown[])[1]);
      const summary = this.getEvent(id);
      seen.add(id);
      if (summary?.status === 'queued' || summary?.status === 'delivering') out.push(summary);
    }
    // Queued again by a change whose commit is under way (a replay).
    let late = false;
    for (const summary of this.#overlay.values()) {
      if (seen.has(summary.id) || summary.status !== 'queued') continue;
      out.push(this.#view(summary));
      late = true;
    }
    if (late) out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return out;
  }

  countByStatus(): Record<EventStatus, number> {
    return { ...this.#counts };
  }

  async removeFinishedBefore(cutoff: number): Promise<number> {
    const db = this.#events;
    const floor = eventIdFloor(cutoff);
    let removed = 0;
    for (const status of FINISHED) {
      for (;;) {
        const ids = Array.from(
          db.byStatus.getKeys({ start: [status], end: [status, floor], limit: REMOVE_BATCH }),
          (key) => String((key as unknown[])[1]),
        ).filter((id) => !this.#overlay.has(id));
        if (ids.length === 0) break;
        const gone = await commit(db, () => {
          let n = 0;
          for (const id of ids) {
            const was = db.states.get(id);
            if (was?.status === status && was.receivedAt < cutoff && removeEvent(db, id)) n++;
          }
          return n;
        });
        this.#counts[status] -= gone;
        removed += gone;
        if (status === 'rejected' && gone > 0) this.#rejectedCount.clear();
        if (ids.length < REMOVE_BATCH || gone === 0) break;
      }
    }
    await this.#pruneDedup();
    return removed;
  }

  /** Forgets dedup keys older than any replay window asks about. */
  async #pruneDedup(): Promise<void> {
    const db = this.#events;
    const before = this.#newestDedupAt - MAX_DEDUP_AGE_MS;
    for (;;) {
      const keys = Array.from(
        db.dedupByTime.getKeys({ start: [0], end: [before], limit: REMOVE_BATCH }),
        (key) => key as unknown[],
      );
      if (keys.length === 0) return;
      await commit(db, () => {
        for (const [at, channelId, key] of keys) {
          const seen = db.dedup.get([String(channelId), String(key)]);
          if (seen && seen[1] === at) db.dedup.removeSync([String(channelId), String(key)]);
          db.dedupByTime.removeSync([at as number, String(channelId), String(key)]);
        }
      });
      if (keys.length < REMOVE_BATCH) return;
    }
  }
}
