/**
 * The embedded store: control-plane state in one lowdb document, events in the journal, and
 * an in-memory index of every event's metadata and delivery state rebuilt from the journal on
 * open. Bodies stay on disk; recent ones are cached in memory up to a byte budget.
 */
import path from 'node:path';
import { PosternError } from '../../shared/errors.ts';
import { ControlDocument } from './control.ts';
import { openDataDir, type DataDirOptions, type StoreLog } from './data-dir.ts';
import { DedupIndex } from './dedup-index.ts';
import { Journal, type Location } from './journal.ts';
import type { DataDirLock } from './lock.ts';
import { PayloadCache } from './payload-cache.ts';
import { decodeRecord, encodeEventRecord, encodeUpdateRecord, STATUSES } from './records.ts';
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

/** Attempts kept per event; older ones are dropped from the log (the count is kept). */
export const MAX_ATTEMPTS_KEPT = 20;

export interface EmbeddedStoreOptions {
  dataDir: string;
  /** Journal segment size bound. Default 64 MiB. */
  segmentBytes?: number;
  /** Bodies of undelivered events kept in memory up to this total. Default 16 MiB. */
  cacheBytes?: number;
  /** The key that encrypts channel secrets at rest. Default: `<data-dir>/secrets.key`. */
  secretsKey?: SecretsKeySource;
  /** Start even if the key cannot open the secrets: those channels then refuse every request. */
  forgetLostSecrets?: boolean;
  /** Warnings about the data dir (permissions tightened, secrets encrypted, a stale lock). */
  logger?: StoreLog;
}

const SILENT: StoreLog = { info() {}, warn() {} };

interface Entry {
  summary: EventSummary;
  /** Where the event record (metadata and body) is. */
  loc: Location;
  /** The segment holding the latest state record of the event; 0 when it has none. */
  stateSegment: number;
}

/** Refused requests kept per channel (metadata only); older ones are forgotten first. */
export const MAX_REJECTED_PER_CHANNEL = 1_000;

/** A sealed segment whose live records fill less than this share of it is rewritten. */
const COMPACT_BELOW = 0.25;

export class EmbeddedStore implements Store {
  readonly #control: ControlDocument;
  readonly #journal: Journal;
  readonly #atRest: DataDirOptions;
  #lock: DataDirLock | null = null;
  readonly #events = new Map<string, Entry>();
  /** Event ids in arrival order, for listing newest first; removed ids linger until rebuilt. */
  #order: string[] = [];
  readonly #position = new Map<string, number>();
  #removedInOrder = 0;
  /** Rejected event ids per channel, oldest first, to keep them bounded. */
  readonly #rejected = new Map<string, string[]>();
  readonly #cache: PayloadCache;
  /** Dedup keys of recent events (replay protection); outlives the events' retention. */
  readonly #dedup = new DedupIndex();
  /** Per segment: how many live events point into it, and the bytes of their event records. */
  readonly #segments = new Map<number, { refs: number; liveBytes: number }>();
  #compacting: Promise<void> | null = null;
  readonly #listeners = new Set<(event: EventSummary) => void>();
  readonly #counts = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<EventStatus, number>;

  constructor(opts: EmbeddedStoreOptions) {
    this.#atRest = {
      dataDir: opts.dataDir,
      secretsKey: opts.secretsKey ?? { kind: 'data-dir' },
      forgetLostSecrets: opts.forgetLostSecrets ?? false,
      log: opts.logger ?? SILENT,
    };
    this.#cache = new PayloadCache(opts.cacheBytes ?? 16 * 1024 * 1024);
    this.#control = new ControlDocument(opts.dataDir);
    this.#journal = new Journal(path.join(opts.dataDir, 'journal'), {
      segmentBytes: opts.segmentBytes ?? 64 * 1024 * 1024,
    });
  }

  async open(): Promise<void> {
    // Locked before anything is read: a second relay on this dir must not even look at it.
    const lock = await openDataDir(this.#atRest, this.#control);
    try {
      await this.#journal.open((buf, loc) => {
        const record = decodeRecord(buf);
        if (record.kind === 'event') this.#index(record.payload, loc);
        else if (this.#events.has(record.id)) this.#apply(record.id, record.update, loc.segment);
      });
    } catch (err) {
      await this.#journal.close();
      await lock.release();
      throw err;
    }
    this.#lock = lock;
    // Nothing is in flight after a restart: what was being delivered is queued again.
    for (const { summary } of this.#events.values()) {
      if (summary.status === 'delivering') this.#setStatus(summary, 'queued');
    }
  }

  async close(): Promise<void> {
    while (this.#compacting) await this.#compacting;
    await this.#journal.close();
    await this.#lock?.release();
    this.#lock = null;
  }

  control(): Readonly<ControlState> {
    return this.#control.state;
  }

  updateControl(change: (state: ControlState) => void): Promise<void> {
    return this.#control.update(change);
  }

  async appendEvent(payload: EventPayload): Promise<EventSummary> {
    const loc = await this.#journal.append(encodeEventRecord(payload));
    const summary = this.#index(payload, loc);
    if (!payload.rejected) this.#cache.add(payload);
    this.#emit(summary);
    return summary;
  }

  async updateEvent(
    id: string,
    update: EventUpdate,
    opts: { lazy?: boolean } = {},
  ): Promise<EventSummary> {
    const entry = this.#events.get(id);
    if (!entry) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    // Memory first, so that dispatch sees one consistent state; disk follows. Losing this
    // record in a crash only means the event is offered again: at least once, never lost.
    this.#apply(id, update, 0);
    this.#emit(entry.summary);
    const loc = await this.#journal.append(encodeUpdateRecord(id, update), opts);
    if (this.#events.get(id) === entry) this.#pointState(entry, loc.segment);
    return entry.summary;
  }

  getEvent(id: string): EventSummary | undefined {
    return this.#events.get(id)?.summary;
  }

  findByDedupKey(channelId: string, dedupKey: string, since: number): Promise<string | undefined> {
    return Promise.resolve(this.#dedup.find(channelId, dedupKey, since));
  }

  /** Marks an event as handed to an agent or back in the queue; memory only (see `open`). */
  markDelivering(id: string, delivering: boolean): void {
    const entry = this.#events.get(id);
    if (!entry) return;
    const { summary } = entry;
    const before = summary.status;
    if (delivering && before === 'queued') this.#setStatus(summary, 'delivering');
    if (!delivering && before === 'delivering') this.#setStatus(summary, 'queued');
    if (summary.status !== before) this.#emit(summary);
  }

  subscribe(listener: (event: EventSummary) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(summary: EventSummary): void {
    for (const listener of this.#listeners) listener(summary);
  }

  async readPayload(id: string): Promise<EventPayload> {
    const cached = this.#cache.get(id);
    if (cached) return cached;
    const entry = this.#events.get(id);
    if (!entry) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    const record = decodeRecord(await this.#journal.read(entry.loc));
    if (record.kind !== 'event') {
      throw new PosternError('ERR_STORE_CORRUPT', `event ${id} points at a non-event record`);
    }
    return record.payload;
  }

  listEvents(filter: EventFilter): { events: EventSummary[]; next: string | null } {
    let i = this.#order.length - 1;
    if (filter.before !== undefined) {
      const at = this.#position.get(filter.before);
      if (at === undefined) {
        throw new PosternError('ERR_BAD_REQUEST', `unknown cursor ${filter.before}`, {
          status: 400,
        });
      }
      i = at - 1;
    }
    const events: EventSummary[] = [];
    if (filter.limit < 1) return { events, next: null };
    for (; i >= 0; i--) {
      const summary = this.#events.get(this.#order[i]!)?.summary;
      if (!summary) continue;
      if (filter.channelId !== undefined && summary.channelId !== filter.channelId) continue;
      if (filter.status !== undefined && summary.status !== filter.status) continue;
      if (events.length === filter.limit) return { events, next: events.at(-1)!.id };
      events.push(summary);
    }
    return { events, next: null };
  }

  pendingEvents(): EventSummary[] {
    const out: EventSummary[] = [];
    for (const id of this.#order) {
      const summary = this.#events.get(id)?.summary;
      if (summary?.status === 'queued' || summary?.status === 'delivering') out.push(summary);
    }
    return out;
  }

  countByStatus(): Record<EventStatus, number> {
    return { ...this.#counts };
  }

  async removeFinishedBefore(cutoff: number): Promise<number> {
    let removed = 0;
    for (const id of this.#order) {
      const summary = this.#events.get(id)?.summary;
      if (!summary) continue;
      if (summary.receivedAt >= cutoff) break;
      if (summary.status === 'queued' || summary.status === 'delivering') continue;
      this.#remove(id);
      removed++;
    }
    await this.#compact();
    return removed;
  }

  /** Forgets an event; its id leaves the arrival order lazily (rebuilt once half is gone). */
  #remove(id: string): void {
    const entry = this.#events.get(id);
    if (!entry) return;
    this.#events.delete(id);
    this.#position.delete(id);
    this.#counts[entry.summary.status]--;
    this.#cache.delete(id);
    this.#unref(entry.loc.segment, entry.loc.length);
    if (entry.stateSegment) this.#unref(entry.stateSegment, 0);
    if (entry.summary.status === 'rejected') {
      const ids = this.#rejected.get(entry.summary.channelId);
      const at = ids?.indexOf(id) ?? -1;
      if (at >= 0) ids!.splice(at, 1);
    }
    if (++this.#removedInOrder * 2 > this.#order.length) {
      this.#order = this.#order.filter((x) => this.#events.has(x));
      this.#position.clear();
      this.#order.forEach((x, i) => this.#position.set(x, i));
      this.#removedInOrder = 0;
    }
  }

  /**
   * Reclaims disk: a sealed segment nothing points into is deleted; one that is mostly dead
   * has its live events written forward (event record and a full state snapshot) first.
   * A crash in between leaves both copies, which `open` reads back as one event.
   */
  #compact(): Promise<void> {
    this.#compacting ??= (async () => {
      try {
        for (const { segment, bytes } of await this.#journal.segments()) {
          if (segment === this.#journal.activeSegment) continue;
          const use = this.#segments.get(segment) ?? { refs: 0, liveBytes: 0 };
          if (use.refs > 0 && use.liveBytes >= bytes * COMPACT_BELOW) continue;
          if (use.refs > 0) await this.#moveForward(segment);
          if ((this.#segments.get(segment)?.refs ?? 0) === 0) {
            await this.#journal.dropSegment(segment);
            this.#segments.delete(segment);
          }
        }
      } finally {
        this.#compacting = null;
      }
    })();
    return this.#compacting;
  }

  async #moveForward(segment: number): Promise<void> {
    for (const entry of [...this.#events.values()]) {
      if (entry.loc.segment !== segment && entry.stateSegment !== segment) continue;
      const payload =
        entry.loc.segment === segment ? await this.readPayload(entry.summary.id) : null;
      if (this.#events.get(entry.summary.id) !== entry) continue; // removed meanwhile
      const { summary } = entry;
      // Encoded and appended in one tick: no update of this event can slip in between.
      const moved = payload ? this.#journal.append(encodeEventRecord(payload)) : null;
      const state = this.#journal.append(
        encodeUpdateRecord(summary.id, {
          status: summary.status === 'delivering' ? 'queued' : summary.status,
          attemptCount: summary.attemptCount,
          nextAttemptAt: summary.nextAttemptAt,
          attempts: [...summary.attempts],
          deliveredRoutes: [...summary.deliveredRoutes],
          replays: summary.replays,
        }),
      );
      if (moved) {
        const loc = await moved;
        this.#unref(entry.loc.segment, entry.loc.length);
        entry.loc = loc;
        this.#ref(loc.segment, loc.length);
      }
      this.#pointState(entry, (await state).segment);
    }
  }

  #ref(segment: number, bytes: number): void {
    const use = this.#segments.get(segment);
    if (use) {
      use.refs++;
      use.liveBytes += bytes;
    } else {
      this.#segments.set(segment, { refs: 1, liveBytes: bytes });
    }
  }

  #unref(segment: number, bytes: number): void {
    const use = this.#segments.get(segment);
    if (!use) return;
    use.refs--;
    use.liveBytes -= bytes;
  }

  /** Records that the event's latest state now lives in `segment`. */
  #pointState(entry: Entry, segment: number): void {
    if (entry.stateSegment === segment) return;
    if (entry.stateSegment) this.#unref(entry.stateSegment, 0);
    entry.stateSegment = segment;
    this.#ref(segment, 0);
  }

  #index(p: EventPayload, loc: Location): EventSummary {
    if (p.dedupKey !== undefined && !p.rejected) {
      this.#dedup.add(p.channelId, p.dedupKey, p.id, p.receivedAt);
    }
    const existing = this.#events.get(p.id);
    if (existing) {
      // The same event twice: compaction wrote it forward and crashed before deleting the
      // old segment. Keep the state; the newer copy is the one to read.
      this.#unref(existing.loc.segment, existing.loc.length);
      existing.loc = loc;
      this.#ref(loc.segment, loc.length);
      return existing.summary;
    }
    const summary: EventSummary = {
      id: p.id,
      channelId: p.channelId,
      status: p.rejected ? 'rejected' : 'queued',
      receivedAt: p.receivedAt,
      method: p.method,
      path: p.path,
      query: p.query,
      size: p.rejected ? p.rejected.size : p.body.length,
      attemptCount: 0,
      attempts: [],
      nextAttemptAt: 0,
      reason: p.rejected?.reason ?? null,
      orderKey: p.orderKey ?? '',
      deliveredRoutes: [],
      replays: 0,
    };
    this.#events.set(p.id, { summary, loc, stateSegment: 0 });
    this.#ref(loc.segment, loc.length);
    this.#position.set(p.id, this.#order.length);
    this.#order.push(p.id);
    this.#counts[summary.status]++;
    if (p.rejected) {
      const ids = this.#rejected.get(p.channelId) ?? [];
      this.#rejected.set(p.channelId, ids);
      ids.push(p.id);
      if (ids.length > MAX_REJECTED_PER_CHANNEL) this.#remove(ids[0]!);
    }
    return summary;
  }

  /** Applies a state change; `segment` is where its record is (0: not written yet). */
  #apply(id: string, update: EventUpdate, segment: number): void {
    const entry = this.#events.get(id)!;
    const { summary } = entry;
    this.#setStatus(summary, update.status);
    summary.attemptCount = update.attemptCount;
    summary.nextAttemptAt = update.nextAttemptAt;
    if (segment) this.#pointState(entry, segment);
    if (update.attempts) summary.attempts = update.attempts.slice(-MAX_ATTEMPTS_KEPT);
    if (update.deliveredRoutes) summary.deliveredRoutes = update.deliveredRoutes;
    if (update.replays !== undefined) {
      summary.replays = update.replays;
      if (!update.deliveredRoutes) summary.deliveredRoutes = [];
    }
    if (update.attempt) {
      summary.attempts.push(update.attempt);
      if (summary.attempts.length > MAX_ATTEMPTS_KEPT) summary.attempts.shift();
    }
    if (update.status !== 'queued' && update.status !== 'delivering') this.#cache.delete(id);
  }

  #setStatus(summary: EventSummary, status: EventStatus): void {
    this.#counts[summary.status]--;
    this.#counts[status]++;
    summary.status = status;
  }
}
