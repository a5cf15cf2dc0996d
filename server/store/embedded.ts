/**
 * The embedded store: control-plane state in one lowdb document, events in LMDB (see
 * event-db.ts). The process holds only what is not on disk yet: the states of changes whose
 * commit is under way (so that a change is visible at once), the claims (events being
 * delivered), and the counts by status. Memory does not grow with the backlog or the history,
 * and opening reads no event.
 *
 * One relay per data dir (lock.ts): claims live in this process only and end with it, so after
 * a restart every event that was being delivered is pending again.
 */
import { chmod } from 'node:fs/promises';
import type { Key } from 'lmdb';
import path from 'node:path';
import { PosternError } from '../../shared/errors.ts';
import { eventIdFloor } from '../ids.ts';
import { ControlDocument } from './control.ts';
import { openDataDir, type DataDirOptions, type StoreLog } from './data-dir.ts';
import {
  absorbFailedCommits,
  addMinutes,
  commit,
  EVENTS_FILE,
  openEventDb,
  putState,
  removeEvent,
  storedStatus,
  upgradeLayout,
  type EventDb,
} from './event-db.ts';
import { applyUpdate, initialSummary } from './event-state.ts';
import { importJournal } from './journal-import.ts';
import { minuteOf, outcomeDelta, receivedDelta, type MinuteDelta } from './minute-stats.ts';
import type { DataDirLock } from './lock.ts';
import { decodeRecord, encodeEventRecord, STATUSES } from './records.ts';
import type { SecretsKeySource } from './secrets-key.ts';
import { readEach, searchEvents } from './search.ts';
import { SharedMemory } from './shared-memory.ts';
import {
  MAX_REJECTED_PER_CHANNEL,
  type AppendClaim,
  type AppendedClaim,
  type Claim,
  type ClaimRef,
  type ClaimRequest,
  type ClaimResult,
  type ControlState,
  type EventFilter,
  type EventSearch,
  type SearchPage,
  type EventPayload,
  type EventStatus,
  type EventSummary,
  type EventUpdate,
  type ListPage,
  type MinuteStats,
  type Store,
  type StoreChange,
  type StoreHealth,
  type SubscribeOptions,
  type AppResponse,
  type Presence,
  type RateLimit,
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

/** Dedup keys are kept this long after the newest one (a day for body-only signers, + margin). */
export const MAX_DEDUP_AGE_MS = 25 * 3_600_000;

/** Finished events removed per retention transaction. */
const REMOVE_BATCH = 1_000;

const FINISHED: readonly EventStatus[] = ['delivered', 'failed', 'rejected', 'filtered'];
/** Above every event id: the end of a range of ids. */
const TOP = '\uffff';
/** How far an event id's time may be from its `receivedAt` for a time range to find it. */
const TIME_MARGIN_MS = 60_000;
/** The last millisecond an event id's 48 bits of time hold. */
const MAX_ID_TIME = 2 ** 48 - 1;

/** Longest a lazy change waits for a commit to ride along with. */
export const LAZY_FLUSH_MS = 50;

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Lazy {
  states: EventSummary[];
  waiters: Waiter[];
  /** The statistics of the settles among them. */
  minutes: MinuteDelta[];
}

interface Held {
  owner: string;
  epoch: number;
  leaseUntil: number;
  channelId: string;
  orderKey: string;
}

/** A channel's claims, and where its claims of ready events may start scanning. */
interface ChannelClaims {
  ids: Set<string>;
  /** Ordering key → its claimed events. */
  keys: Map<string, Set<string>>;
  /**
   * Every ready event (due with no retry time) of the channel up to this id is claimed: a
   * claim scans from here. Cleared when one below it may be ready again (released, replayed, a
   * lease run out).
   */
  readyFrom: string | null;
  /** No lease of the channel ends before this (a lower bound). */
  leasesFrom: number;
}

/** Writes changed states of events still stored; runs inside a write transaction. */
function writeStates(db: EventDb, states: readonly EventSummary[]): void {
  for (const next of states) {
    const was = db.states.get(next.id);
    if (was) putState(db, next, was); // removed meanwhile (retention): nothing to write
  }
}

export class EmbeddedStore implements Store {
  /** One relay per data dir. */
  readonly shared = false;
  readonly #control: ControlDocument;
  readonly #atRest: DataDirOptions;
  #lock: DataDirLock | null = null;
  #db: EventDb | null = null;
  #unabsorb: () => void = () => undefined;
  /** States changed whose commit is under way, so that reads see a change at once. */
  readonly #overlay = new Map<string, EventSummary>();
  /** Claimed events: `delivering`, in memory only. */
  readonly #claims = new Map<string, Held>();
  readonly #byChannel = new Map<string, ChannelClaims>();
  #epoch = 0;
  /** Each listener, and whether it wants `event` changes. */
  readonly #listeners = new Map<(change: StoreChange) => void, boolean>();
  readonly #counts = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<EventStatus, number>;
  /** Lazy changes waiting for a commit to ride along with (see settle). */
  readonly #lazy = new Map<string, EventSummary>();
  #lazyWaiters: Waiter[] = [];
  #lazyMinutes: MinuteDelta[] = [];
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
      const indexed = await upgradeLayout(this.#db);
      if (indexed > 0) this.#atRest.log.info({ indexed }, 'indexed the pending events by channel');
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
    this.#claims.clear();
    this.#byChannel.clear();
  }

  /** Local files: available while open (a failing disk shows in the writes themselves). */
  async health(): Promise<StoreHealth> {
    return this.#db ? 'available' : 'unavailable';
  }

  get #events(): EventDb {
    if (!this.#db) throw new PosternError('ERR_UNAVAILABLE', 'the store is not open');
    return this.#db;
  }

  async readControl(): Promise<ControlState> {
    return structuredClone(this.#control.state) as ControlState;
  }

  async updateControl(change: (state: ControlState) => void): Promise<ControlState> {
    await this.#control.update(change);
    this.#emit({ type: 'control' });
    return structuredClone(this.#control.state) as ControlState;
  }

  async appendEvent(payload: EventPayload): Promise<EventSummary> {
    const summary = await this.#append(payload);
    this.#emit({ type: 'event', event: { ...summary } });
    if (summary.status === 'queued') this.#emit({ type: 'work', channelId: summary.channelId });
    return summary;
  }

  async appendClaimed(payload: EventPayload, claim: AppendClaim): Promise<AppendedClaim> {
    if (payload.rejected) throw new TypeError('appendClaimed: a refused request is never claimed');
    const cc = this.#channelClaims(payload.channelId);
    if (claim.now >= cc.leasesFrom) this.#expireLeases(cc, claim.now);
    // A due event stored before this one comes first (those stored with it do not count).
    const behind = this.#hasDue(payload.channelId, claim.now);
    const summary = await this.#append(payload);
    // Or a claim took it between its commit and now: that claim delivers it.
    if (behind || this.#claims.has(summary.id)) {
      const event = this.#view(summary);
      this.#emit({ type: 'event', event: { ...event } });
      if (event.status === 'queued') this.#emit({ type: 'work', channelId: event.channelId });
      return { event, epoch: null };
    }
    const epoch = this.#nextEpoch();
    this.#hold(cc, summary.id, {
      owner: claim.owner,
      epoch,
      leaseUntil: claim.now + claim.leaseMs,
      channelId: summary.channelId,
      orderKey: summary.orderKey,
    });
    this.#counts.queued--;
    this.#counts.delivering++;
    const event = this.#view(summary);
    this.#emit({ type: 'event', event: { ...event } });
    return { event, epoch };
  }

  /** Whether the channel has an event due at `now` that is not claimed (see #claimDue). */
  #hasDue(channelId: string, now: number): boolean {
    const db = this.#events;
    const cc = this.#channelClaims(channelId);
    // Retries whose time came.
    const due = (start: Key[], end: Key[]): boolean => {
      for (const key of db.pending.getKeys({ start, end })) {
        const id = String((key as unknown[])[2]);
        if (this.#claims.has(id)) continue;
        const e = this.#current(id);
        if (e && e.status === 'queued' && e.nextAttemptAt <= now) return true;
      }
      return false;
    };
    const ch = channelId;
    if (due([ch, 0, TOP], [ch, now, TOP])) return true;
    // The ready ones, from where claims start: those passed here (claimed, or finished with
    // their commit under way) need not be looked at again, as in #claimDue.
    for (const key of db.pending.getKeys({
      start: cc.readyFrom === null ? [ch, 0] : [ch, 0, cc.readyFrom],
      end: [ch, 0, TOP],
    })) {
      const id = String((key as unknown[])[2]);
      const e = this.#claims.has(id) ? undefined : this.#current(id);
      if (e?.status === 'queued') return true;
      cc.readyFrom = id;
    }
    return false;
  }

  /** Writes a new event; resolves once it is durable. */
  async #append(payload: EventPayload): Promise<EventSummary> {
    const db = this.#events;
    const summary = initialSummary(payload);
    const record = encodeEventRecord(payload);
    const dedupKey = payload.rejected ? undefined : payload.dedupKey;
    let forgotten: string | undefined;
    if (payload.rejected) this.#countRejected(payload.channelId);
    let lazy: Lazy = { states: [], waiters: [], minutes: [] };
    const received = receivedDelta(summary);
    const committed = commit(db, () => {
      // Delivery outcomes waiting for a commit ride along with this one.
      lazy = this.#takeLazy();
      writeStates(db, lazy.states);
      addMinutes(db, received ? [...lazy.minutes, received] : lazy.minutes);
      db.payloads.putSync(payload.id, record);
      putState(db, summary, undefined);
      if (dedupKey !== undefined) {
        db.dedup.putSync([payload.channelId, dedupKey], [payload.id, payload.receivedAt]);
        db.dedupByTime.putSync([payload.receivedAt, payload.channelId, dedupKey], 1);
      }
      if (payload.rejected) forgotten = this.#boundRejected(db, payload.channelId);
    });
    await committed.then(
      () => this.#settleLazy(lazy, null),
      (err: unknown) => {
        this.#settleLazy(lazy, err);
        throw err;
      },
    );
    this.#counts[summary.status]++;
    if (forgotten !== undefined) this.#counts.rejected--;
    if (dedupKey !== undefined)
      this.#newestDedupAt = Math.max(this.#newestDedupAt, payload.receivedAt);
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
    opts: { expect?: readonly EventStatus[] } = {},
  ): Promise<EventSummary> {
    const current = this.#current(id);
    if (!current) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    const status = this.#effective(current);
    if (opts.expect && !opts.expect.includes(status)) {
      throw new PosternError('ERR_CONFLICT', `event ${id} is ${status}`, { status: 409 });
    }
    // A replay starts afresh: a claim it had is over (its settle is refused).
    if (update.replays !== undefined) this.#unclaim(id);
    return this.#change(current, update, false, null);
  }

  /** The latest state of an event: a change under way, else what is on disk. */
  #current(id: string): EventSummary | undefined {
    return this.#overlay.get(id) ?? this.#db?.states.get(id);
  }

  /**
   * Applies a change: visible at once (memory first, so that every reader sees one consistent
   * state), durable when the promise resolves. A lazy one rides along with the next commit
   * (or one LAZY_FLUSH_MS later): losing it in a crash only means the event is offered again.
   */
  async #change(
    current: EventSummary,
    update: EventUpdate,
    lazy: boolean,
    /** A settle's outcome: counted in its minute, in the commit that writes it. */
    outcome: ((next: EventSummary) => MinuteDelta | null) | null,
  ): Promise<EventSummary> {
    const db = this.#events;
    const id = current.id;
    // `delivering` is what a claim shows, not a state to store.
    const next = applyUpdate(current, { ...update, status: storedStatus(update.status) });
    const delta = outcome?.(next) ?? null;
    if (next.status !== 'queued') this.#unclaim(id);
    const before = this.#effective(current);
    this.#counts[before]--;
    this.#counts[this.#effective(next)]++;
    this.#overlay.set(id, next);
    if (next.status === 'queued') this.#readyMayBeBehind(next.channelId);
    this.#emit({ type: 'event', event: this.#view(next) });
    if (lazy) {
      await new Promise<void>((resolve, reject) => {
        this.#lazy.set(id, next);
        if (delta) this.#lazyMinutes.push(delta);
        this.#lazyWaiters.push({ resolve, reject });
        this.#lazyTimer ??= setTimeout(() => void this.#flushLazy(), LAZY_FLUSH_MS);
      });
    } else {
      // This state supersedes a lazy one still waiting: that one must not be written after it.
      this.#lazy.delete(id);
      await commit(db, () => {
        writeStates(db, [next]);
        if (delta) addMinutes(db, [delta]);
      });
      // Committed: the indexes claims read now hold it. Pending again, or out of its lane (a
      // skipped head frees its key): claims may find work.
      if (next.status === 'queued' || current.status === 'queued') {
        this.#emit({ type: 'work', channelId: next.channelId });
      }
    }
    if (this.#overlay.get(id) === next) this.#overlay.delete(id);
    return this.#view(next);
  }

  /** Takes the lazy changes waiting, to write them in the transaction being built. */
  #takeLazy(): Lazy {
    if (this.#lazyTimer) clearTimeout(this.#lazyTimer);
    this.#lazyTimer = null;
    const taken = {
      states: [...this.#lazy.values()],
      waiters: this.#lazyWaiters,
      minutes: this.#lazyMinutes,
    };
    this.#lazy.clear();
    this.#lazyWaiters = [];
    this.#lazyMinutes = [];
    return taken;
  }

  /**
   * Tells the waiters of a lazy batch how its commit went; events it put back in the queue are
   * in the claim indexes now, so their channels may have work.
   */
  #settleLazy(lazy: Lazy, err: unknown): void {
    for (const w of lazy.waiters) {
      if (err === null) w.resolve();
      else w.reject(err);
    }
    if (err !== null) return;
    const channels = new Set<string>();
    for (const e of lazy.states) if (e.status === 'queued') channels.add(e.channelId);
    for (const channelId of channels) this.#emit({ type: 'work', channelId });
  }

  /** Commits the lazy changes that found no commit to ride along with in LAZY_FLUSH_MS. */
  async #flushLazy(): Promise<void> {
    this.#lazyTimer = null;
    if (this.#lazy.size === 0 && this.#lazyWaiters.length === 0) return;
    const db = this.#events;
    let taken: Lazy = { states: [], waiters: [], minutes: [] };
    await commit(db, () => {
      taken = this.#takeLazy();
      writeStates(db, taken.states);
      addMinutes(db, taken.minutes);
    }).then(
      () => this.#settleLazy(taken, null),
      (err: unknown) => this.#settleLazy(taken, err),
    );
  }

  async getEvent(id: string): Promise<EventSummary | undefined> {
    return this.#get(id);
  }

  #get(id: string): EventSummary | undefined {
    const summary = this.#current(id);
    return summary && this.#view(summary);
  }

  /** A summary as readers see it (a copy): `delivering` while claimed. */
  #view(summary: EventSummary): EventSummary {
    return { ...summary, status: this.#effective(summary) };
  }

  #effective(summary: EventSummary): EventStatus {
    return summary.status === 'queued' && this.#claims.has(summary.id)
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

  // --- claims ---

  async claim(req: ClaimRequest): Promise<ClaimResult> {
    const db = this.#events;
    const cc = this.#channelClaims(req.channelId);
    if (req.now >= cc.leasesFrom) this.#expireLeases(cc, req.now);
    const claims: Claim[] = [];
    let wakeAt: number | null = null;
    const later = (at: number) => {
      if (at > req.now && (wakeAt === null || at < wakeAt)) wakeAt = at;
    };
    const take = (e: EventSummary) => {
      const epoch = this.#nextEpoch();
      const held: Held = {
        owner: req.owner,
        epoch,
        leaseUntil: req.now + req.leaseMs,
        channelId: e.channelId,
        orderKey: e.orderKey,
      };
      this.#hold(cc, e.id, held);
      this.#counts.queued--;
      this.#counts.delivering++;
      const event = this.#view(e);
      claims.push({ event, epoch });
      this.#emit({ type: 'event', event: { ...event } });
    };
    if (req.limit > 0) {
      if (req.ordered) this.#claimHeads(db, req, cc, take, later);
      else this.#claimDue(db, req, cc, take);
    }
    // What waits: the earliest retry time of the channel, and leases of others running out.
    for (const key of db.pending.getKeys({
      start: [req.channelId, req.now, TOP],
      end: [req.channelId, Infinity],
      limit: 1,
    })) {
      later(Number((key as unknown[])[1]));
    }
    for (const e of this.#overlay.values()) {
      if (e.channelId === req.channelId && e.status === 'queued') later(e.nextAttemptAt);
    }
    for (const id of cc.ids) later(this.#claims.get(id)!.leaseUntil);
    return { claims, wakeAt };
  }

  /**
   * Unordered: due events; retries whose time came first (by that time), then the others by
   * arrival, so that new arrivals never overtake a retry that is due (rule 5).
   */
  #claimDue(
    db: EventDb,
    req: ClaimRequest,
    cc: ChannelClaims,
    take: (e: EventSummary) => void,
  ): void {
    let n = 0;
    const scan = (start: Key[], end: Key[], ready: boolean): boolean => {
      for (const key of db.pending.getKeys({ start, end })) {
        const id = String((key as unknown[])[2]);
        if (this.#claims.has(id)) continue;
        const e = this.#current(id);
        // The index holds what is committed: a change under way is checked here.
        if (!e || e.status !== 'queued' || e.nextAttemptAt > req.now) continue;
        take(e);
        if (ready) cc.readyFrom = id;
        if (++n === req.limit) return true;
      }
      return false;
    };
    const ch = req.channelId;
    if (scan([ch, 0, TOP], [ch, req.now, TOP], false)) return;
    scan(cc.readyFrom === null ? [ch, 0] : [ch, 0, cc.readyFrom], [ch, 0, TOP], true);
  }

  /** Ordered: the head of each ordering key whose key is free and which is due. */
  #claimHeads(
    db: EventDb,
    req: ClaimRequest,
    cc: ChannelClaims,
    take: (e: EventSummary) => void,
    later: (at: number) => void,
  ): void {
    const ch = req.channelId;
    let n = 0;
    let from: Key[] = [ch];
    for (;;) {
      let key: string | undefined;
      let head: EventSummary | undefined;
      for (const k of db.lanes.getKeys({ start: from, end: [ch, TOP] })) {
        const [, orderKey, id] = k as [string, string, string];
        if (key !== undefined && orderKey !== key) break;
        key = orderKey;
        const e = this.#current(id);
        // Delivered or failed meanwhile (its commit under way): the next one is the head.
        if (!e || e.status !== 'queued') continue;
        head = e;
        break;
      }
      if (key === undefined) return;
      from = [ch, key, TOP];
      if (head === undefined || cc.keys.has(key) || this.#claims.has(head.id)) continue;
      if (head.nextAttemptAt > req.now) {
        later(head.nextAttemptAt);
        continue;
      }
      take(head);
      if (++n === req.limit) return;
    }
  }

  /**
   * A new claim's epoch, above every epoch of an earlier process too (claims end with it, their
   * settles must not match a new claim): microseconds of the clock, or one more than the last.
   */
  #nextEpoch(): number {
    return (this.#epoch = Math.max(this.#epoch + 1, Date.now() * 1_000));
  }

  #channelClaims(channelId: string): ChannelClaims {
    let cc = this.#byChannel.get(channelId);
    if (!cc) {
      cc = { ids: new Set(), keys: new Map(), readyFrom: null, leasesFrom: Infinity };
      this.#byChannel.set(channelId, cc);
    }
    return cc;
  }

  #hold(cc: ChannelClaims, id: string, held: Held): void {
    this.#claims.set(id, held);
    cc.ids.add(id);
    let key = cc.keys.get(held.orderKey);
    if (!key) cc.keys.set(held.orderKey, (key = new Set()));
    key.add(id);
    cc.leasesFrom = Math.min(cc.leasesFrom, held.leaseUntil);
  }

  /** Ends a claim, if any; returns it. Counts move with it while the event is queued. */
  #unclaim(id: string): Held | undefined {
    const held = this.#claims.get(id);
    if (!held) return undefined;
    this.#claims.delete(id);
    const cc = this.#byChannel.get(held.channelId)!;
    cc.ids.delete(id);
    const key = cc.keys.get(held.orderKey);
    key?.delete(id);
    if (key?.size === 0) cc.keys.delete(held.orderKey);
    if (this.#current(id)?.status === 'queued') {
      this.#counts.delivering--;
      this.#counts.queued++;
    }
    return held;
  }

  /** Claims whose lease ran out end: their events are pending again. */
  #expireLeases(cc: ChannelClaims, now: number): void {
    let next = Infinity;
    for (const id of [...cc.ids]) {
      const held = this.#claims.get(id)!;
      if (held.leaseUntil <= now) {
        this.#unclaim(id);
        cc.readyFrom = null;
      } else next = Math.min(next, held.leaseUntil);
    }
    cc.leasesFrom = next;
  }

  /**
   * An event of the channel is pending again: a claim must not start past it (until its change
   * is committed, the index holds it where it was, maybe among the ready ones).
   */
  #readyMayBeBehind(channelId: string): void {
    const cc = this.#byChannel.get(channelId);
    if (cc) cc.readyFrom = null;
  }

  /** The claim `ref` names, if it still holds. */
  #holding(ref: ClaimRef): Held | undefined {
    const held = this.#claims.get(ref.id);
    return held?.epoch === ref.epoch ? held : undefined;
  }

  async settle(
    ref: ClaimRef,
    update: EventUpdate,
    opts: { lazy?: boolean } = {},
  ): Promise<EventSummary | null> {
    if (!this.#holding(ref)) return null;
    const current = this.#current(ref.id);
    this.#unclaim(ref.id);
    if (!current) return null;
    const channelId = current.channelId;
    const settled = this.#change(current, update, opts.lazy ?? false, (next) =>
      outcomeDelta(next, update, Date.now()),
    );
    // A key freed, or room on the channel: claims may find more.
    if (update.status !== 'queued') this.#emit({ type: 'work', channelId });
    return settled;
  }

  async release(ref: ClaimRef, opts: { notBefore?: number } = {}): Promise<boolean> {
    const held = this.#holding(ref);
    if (!held) return false;
    const current = this.#current(ref.id);
    this.#unclaim(ref.id);
    if (!current || current.status !== 'queued') return true;
    if (opts.notBefore !== undefined && opts.notBefore > current.nextAttemptAt) {
      const update = {
        status: 'queued' as const,
        attemptCount: current.attemptCount,
        nextAttemptAt: opts.notBefore,
      };
      await this.#change(current, update, false, null);
      return true;
    }
    this.#readyMayBeBehind(current.channelId);
    this.#emit({ type: 'event', event: this.#view(current) });
    this.#emit({ type: 'work', channelId: current.channelId });
    return true;
  }

  async renewClaims(
    owner: string,
    claims: readonly ClaimRef[],
    now: number,
    leaseMs: number,
  ): Promise<number> {
    let n = 0;
    for (const ref of claims) {
      const held = this.#claims.get(ref.id);
      if (held?.owner !== owner || held.epoch !== ref.epoch || held.leaseUntil <= now) continue;
      held.leaseUntil = now + leaseMs;
      n++;
    }
    for (const cc of this.#byChannel.values()) {
      let from = Infinity;
      for (const id of cc.ids) from = Math.min(from, this.#claims.get(id)!.leaseUntil);
      cc.leasesFrom = from;
    }
    return n;
  }

  subscribe(listener: (change: StoreChange) => void, opts: SubscribeOptions = {}): () => void {
    this.#listeners.set(listener, opts.events !== false);
    return () => this.#listeners.delete(listener);
  }

  // Rule 8: one relay per data dir, so what relays share is kept in memory.
  readonly #shared = new SharedMemory((change) => this.#emit(change));

  async takeToken(key: string, limit: RateLimit, now: number): Promise<number> {
    return this.#shared.takeToken(key, limit, now);
  }

  async publishResponse(response: AppResponse, until: number): Promise<void> {
    this.#shared.publishResponse(response, until, Date.now());
  }

  async readResponse(eventId: string, now: number): Promise<AppResponse | undefined> {
    return this.#shared.readResponse(eventId, now);
  }

  async putPresence(owner: string, agents: readonly string[], until: number): Promise<void> {
    this.#shared.putPresence(owner, agents, until);
  }

  async readPresence(now: number): Promise<Presence[]> {
    return this.#shared.readPresence(now);
  }

  #emit(change: StoreChange): void {
    for (const [listener, events] of this.#listeners) {
      if (events || change.type !== 'event') listener(change);
    }
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

  async listEvents(filter: EventFilter): Promise<ListPage> {
    const { before, limit } = filter;
    if (before !== undefined && !this.#current(before)) {
      throw new PosternError('ERR_BAD_REQUEST', `unknown cursor ${before}`, { status: 400 });
    }
    const events: EventSummary[] = [];
    if (limit < 1) return { events, next: null };
    for (const id of this.#withOverlay(filter, this.#newestFirst(filter))) {
      const summary = this.#get(id);
      if (!summary) continue;
      // The indexes hold what is committed: a change under way is checked against the filter.
      if (filter.channelId !== undefined && summary.channelId !== filter.channelId) continue;
      if (filter.status !== undefined && summary.status !== filter.status) continue;
      if (filter.since !== undefined && summary.receivedAt < filter.since) continue;
      if (filter.until !== undefined && summary.receivedAt >= filter.until) continue;
      if (events.length === limit) return { events, next: events.at(-1)!.id };
      events.push(summary);
    }
    return { events, next: null };
  }

  async searchEvents(search: EventSearch): Promise<SearchPage> {
    return searchEvents(
      {
        listEvents: (filter) => this.listEvents(filter),
        getEvent: (id) => this.getEvent(id),
        readPayloads: (ids) => readEach(this, ids),
      },
      search,
    );
  }

  /**
   * Merges into the indexes' candidates the events whose change is not committed yet (the
   * indexes hold what is): they are few, and a listing must see a change at once too.
   */
  *#withOverlay(filter: EventFilter, indexed: Iterable<string>): Iterable<string> {
    const below = filter.before ?? TOP;
    const { since, until } = filter;
    const late = [...this.#overlay.values()]
      .filter(
        (e) =>
          e.id < below &&
          (filter.channelId === undefined || e.channelId === filter.channelId) &&
          (filter.status === undefined || this.#effective(e) === filter.status) &&
          (since === undefined || e.receivedAt >= since) &&
          (until === undefined || e.receivedAt < until),
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
    const { channelId, status } = filter;
    // A time range is a range of ids (ULIDs of their arrival), with a margin: the exact test on
    // `receivedAt` is listEvents'.
    const idTime = (ms: number) => eventIdFloor(Math.min(ms, MAX_ID_TIME));
    const top =
      filter.until === undefined || filter.until + TIME_MARGIN_MS >= MAX_ID_TIME
        ? TOP
        : idTime(filter.until + TIME_MARGIN_MS);
    const below = filter.before !== undefined && filter.before < top ? filter.before : top;
    const floor = filter.since === undefined ? undefined : idTime(filter.since - TIME_MARGIN_MS);
    if (status === 'delivering') {
      const ids = [...this.#claims.keys()]
        .filter((id) => id < below && (floor === undefined || id >= floor))
        .sort();
      for (let i = ids.length - 1; i >= 0; i--) yield ids[i]!;
      return;
    }
    const range = <K extends unknown[]>(prefix: K, at: number) => ({
      start: [...prefix, below],
      end: floor === undefined ? prefix : [...prefix, floor],
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
      const range = floor === undefined ? {} : { end: floor };
      for (const id of db.states.getKeys({ start: below, reverse: true, ...range })) {
        if (id !== below) yield id;
      }
      return;
    }
    for (const key of source.db.getKeys({ start: source.start, end: source.end, reverse: true })) {
      const id = source.pick(key);
      if (id !== below) yield id;
    }
  }

  async countByStatus(): Promise<Record<EventStatus, number>> {
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
    await this.#pruneMinutes(cutoff);
    return removed;
  }

  /** Forgets the statistics of minutes that ended before the retention's cutoff. */
  async #pruneMinutes(cutoff: number): Promise<void> {
    const db = this.#events;
    const end = minuteOf(cutoff);
    for (;;) {
      const keys = Array.from(db.minutes.getKeys({ end, limit: REMOVE_BATCH }), Number);
      if (keys.length === 0) return;
      await commit(db, () => {
        for (const minute of keys) db.minutes.removeSync(minute);
      });
      if (keys.length < REMOVE_BATCH) return;
    }
  }

  async minuteStats(range: { since: number; until: number }): Promise<MinuteStats[]> {
    const db = this.#events;
    // Lazy settles are visible to reads at once (rule 2): their counts are written first.
    await this.#flushLazy();
    const out: MinuteStats[] = [];
    for (const { value } of db.minutes.getRange({ start: range.since, end: range.until })) {
      out.push(structuredClone(value));
    }
    return out;
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
