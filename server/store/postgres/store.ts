/**
 * The PostgreSQL store: the contract of ../types.ts on a database that several relays share.
 * Every rule that spans processes lives in the schema's functions (migrations/), each called in
 * one round trip; this file batches calls (group commit), maps rows, and runs the feed.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ConfigError, PosternError } from '../../../shared/errors.ts';
import { isObject } from '../../../shared/fields.ts';
import type { StoreLog } from '../data-dir.ts';
import type { SecretsKeySource } from '../secrets-key.ts';
import { emptyControl, parseControl } from '../control-state.ts';
import { initialSummary } from '../event-state.ts';
import { decodeRecord, encodeEventRecord, STATUSES } from '../records.ts';
import {
  MAX_REJECTED_PER_CHANNEL,
  type AppendClaim,
  type AppendedClaim,
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
} from '../types.ts';
import { AtRest } from './at-rest.ts';
import { GroupCommit } from './batch.ts';
import { eventNotes, Feed, note, type RemoteChange } from './feed.ts';
import { applyMigrations } from './migrate.ts';
import { foldMinutes, readMinutes } from './minutes.ts';
import { DAY_MS, Days, pruneDedup, removeFinished } from './partitions.ts';
import { clientConfig, createPool, scrubError } from './pool.ts';
import { parseSummary, toJsonb } from './rows.ts';
import { searchEvents } from '../search.ts';
import { SharedState } from './shared.ts';
import { redactUrl } from './url.ts';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/db?sslmode=…` */
  url: string;
  /** Pool connections at most (default 10); the feed holds one more. */
  poolSize?: number;
  /**
   * The relay's data dir: locked while the store is open (one relay per dir, as with the
   * embedded store); `<data-dir>/secrets.key` lives there by default. Required with
   * `secretsKey`.
   */
  dataDir?: string;
  /**
   * The key that seals channel secrets in `postern_control` (as the embedded store seals them
   * in state.json). Absent: secrets are stored as given, and no data dir is locked (the
   * store's own tests); the relay always passes one.
   */
  secretsKey?: SecretsKeySource;
  /** Start even if the key cannot open the secrets: those channels then refuse every request. */
  forgetLostSecrets?: boolean;
  logger?: StoreLog;
  /** Wall clock, for the partitions created ahead. */
  now?: () => number;
  /** The feed's reconnect delay (attempt counts from 1); default: capped full jitter. */
  feedBackoff?: (attempt: number) => number;
}

/** Statements sent for appends and settles, and the calls they carried (group commit). */
export interface StoreStats {
  appendStatements: number;
  appendedEvents: number;
  settleStatements: number;
  settles: number;
}

const SILENT: StoreLog = { info() {}, warn() {} };

/** Longest a lazy settle waits for company (as the embedded store's LAZY_FLUSH_MS). */
export const LAZY_FLUSH_MS = 50;
/** Events' summaries as readers see them (`delivering` while claimed); add WHERE, ORDER BY. */
const SUMMARIES = `SELECT postern_summary(e, p.claim_owner IS NOT NULL) AS s
  FROM postern_events e LEFT JOIN postern_pending p ON p.event_id = e.id`;
/** Calls per group commit at most. */
const MAX_BATCH = 256;
/** Days of partitions kept ready ahead of the clock. */
const DAYS_AHEAD = 2;
/** Maintenance (partitions ahead, compaction of the counts) this often. */
const MAINTENANCE_MS = 60_000;
/**
 * The queue table is vacuumed by the store this often once this many of its rows finished
 * since the last time: every event is inserted, claimed and deleted there, and autovacuum at
 * its defaults lets the dead rows pile up until claims slow down many times over.
 */
const VACUUM_MS = 2_000;
const VACUUM_AFTER_ROWS = 1_000;
/** Advisory lock key: one relay at a time vacuums the queue table. */
const VACUUM_LOCK = 0x706f7374;
/** Compaction of the status deltas once this many rows piled up. */
const COMPACT_ROWS = 1_000;
/** Longest a readiness probe waits for the database to answer. */
const HEALTH_TIMEOUT_MS = 2_000;

const FINISHED_STATUSES = new Set<EventStatus>(['delivered', 'failed', 'rejected', 'filtered']);

/** Error codes of a database that is away (connection refused, restarted, terminated). */
const UNAVAILABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

/** An event to append, and who claims it in the same statement (`appendClaimed`). */
interface AppendItem {
  payload: EventPayload;
  claim: AppendClaim | null;
}

/** The epoch of an event claimed in its append (the last row counts the notes: no id). */
interface EpochRow {
  event_id: string | null;
  claim_epoch: string;
}

interface SettleItem {
  id: string;
  epoch: number;
  update: EventUpdate;
  /** May be lost in a crash of the server (the event is offered again): no WAL flush wait. */
  lazy: boolean;
}

/**
 * Selected with a statement whose commit need not survive a crash of the server: it commits
 * without waiting for the WAL flush (its own transaction only). Any later durable commit
 * flushes the WAL, this one's included.
 */
const NO_FLUSH = "set_config('synchronous_commit', 'off', true)";

/** A claimed event's record comes back with its claim when its body is this size or less. */
const PREFETCH_BYTES = 64 * 1024;
/** Records kept for dispatch to read at most (a claim's worth of windows). */
const PREFETCH_MAX = 1_024;

/** A socket's error (the database away), as opposed to one of a local file. */
function isNetwork(err: unknown): boolean {
  const syscall = (err as { syscall?: unknown }).syscall;
  return (
    syscall === 'connect' || syscall === 'read' || syscall === 'write' || syscall === 'getaddrinfo'
  );
}

/** `delivering` is a claim, never a stored status: an update to it keeps the event queued. */
function storedUpdate(update: EventUpdate): EventUpdate {
  return update.status === 'delivering' ? { ...update, status: 'queued' } : update;
}

export class PostgresStore implements Store {
  readonly shared = true;
  readonly #opts: PostgresStoreOptions;
  readonly #log: StoreLog;
  readonly #now: () => number;
  /** This instance, in the feed: its own notifications are not reported twice. */
  readonly #src = randomUUID();
  #pool: pg.Pool | null = null;
  #feed: Feed | null = null;
  #maintenance: NodeJS.Timeout | null = null;
  #vacuumTimer: NodeJS.Timeout | null = null;
  /** Rows of the queue table finished (settled) since its last vacuum here. */
  #churn = 0;
  readonly #atRest: AtRest | null;
  readonly #days = new Days();
  /** Each listener, and whether it wants `event` changes. */
  readonly #listeners = new Map<(change: StoreChange) => void, boolean>();
  readonly #shared = new SharedState({
    query: (sql, params) => this.#q(sql, params),
    src: this.#src,
    now: () => this.#now(),
    emit: (change) => this.#emit(change),
  });
  readonly #stats: StoreStats = {
    appendStatements: 0,
    appendedEvents: 0,
    settleStatements: 0,
    settles: 0,
  };
  readonly #appends = new GroupCommit<AppendItem, AppendedClaim>((b) => this.#appendBatch(b), {
    maxInFlight: 2,
    maxBatch: MAX_BATCH,
    lazyMs: LAZY_FLUSH_MS,
  });
  readonly #settles = new GroupCommit<SettleItem, EventSummary | null>(
    (b) => this.#settleBatch(b),
    { maxInFlight: 2, maxBatch: MAX_BATCH, lazyMs: LAZY_FLUSH_MS },
  );
  /**
   * Records of claimed events that came back with their claim, until dispatch reads them (at
   * most PREFETCH_MAX, the oldest dropped first: one dropped is read on its own).
   */
  readonly #prefetched = new Map<string, Buffer>();
  /** Bodies read together: a claim's events are read back at once, in one statement. */
  readonly #reads = new GroupCommit<string, Buffer | undefined>((ids) => this.#readBatch(ids), {
    maxInFlight: 2,
    maxBatch: MAX_BATCH,
    lazyMs: LAZY_FLUSH_MS,
  });

  constructor(opts: PostgresStoreOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? SILENT;
    this.#now = opts.now ?? Date.now;
    if (opts.secretsKey !== undefined && opts.dataDir === undefined) {
      throw new ConfigError('PostgresStore: a secrets key needs the data dir it is kept with');
    }
    this.#atRest =
      opts.secretsKey !== undefined && opts.dataDir !== undefined
        ? new AtRest(
            {
              dataDir: opts.dataDir,
              secretsKey: opts.secretsKey,
              forgetLostSecrets: opts.forgetLostSecrets ?? false,
            },
            this.#log,
            `the database's postern_control (${redactUrl(opts.url)})`,
          )
        : null;
  }

  async open(): Promise<void> {
    const { url } = this.#opts;
    // Locked before anything is read: a second relay on this dir must not even look at it.
    await this.#atRest?.lock();
    const pool = createPool({
      url,
      ...(this.#opts.poolSize !== undefined ? { max: this.#opts.poolSize } : {}),
      onError: (err) => this.#log.warn({ err: err.message }, 'database connection lost'),
    });
    try {
      const migrated = await applyMigrations(pool);
      if (migrated.applied.length > 0) {
        this.#log.info({ applied: migrated.applied }, 'database schema migrated');
      }
      this.#pool = pool;
      await this.#openSecrets();
      await this.#ensureDaysAhead();
      const feed = new Feed({
        config: clientConfig({ url, applicationName: 'postern-feed' }),
        url,
        src: this.#src,
        onChange: (change) => this.#remote(change),
        onResume: () => this.#resume(),
        onError: (err) => this.#log.warn({ err: err.message }, 'change feed: connection lost'),
        ...(this.#opts.feedBackoff ? { backoff: this.#opts.feedBackoff } : {}),
      });
      await feed.start();
      this.#feed = feed;
    } catch (err) {
      this.#pool = null;
      await pool.end().catch(() => undefined);
      await this.#atRest?.unlock();
      throw this.#wrap(err);
    }
    this.#maintenance = setInterval(() => void this.#maintain(), MAINTENANCE_MS);
    this.#maintenance.unref();
    this.#vacuumTimer = setInterval(() => void this.#vacuumQueue(), VACUUM_MS);
    this.#vacuumTimer.unref();
  }

  async close(): Promise<void> {
    if (this.#maintenance) clearInterval(this.#maintenance);
    this.#maintenance = null;
    if (this.#vacuumTimer) clearInterval(this.#vacuumTimer);
    this.#vacuumTimer = null;
    if (!this.#pool) return;
    await Promise.allSettled([this.#appends.flush(), this.#settles.flush()]);
    await this.#feed?.stop();
    this.#feed = null;
    const pool = this.#pool;
    this.#pool = null;
    try {
      await pool.end();
    } finally {
      await this.#atRest?.unlock();
    }
  }

  /**
   * Loads the secrets key for the control row as stored and opens its secrets: a key that
   * cannot open them is refused here, at start. Secrets found in clear (written before they
   * were sealed) or lost are written back sealed at once.
   */
  async #openSecrets(): Promise<void> {
    if (!this.#atRest) return;
    const rows = await this.#q<{ doc: unknown }>('SELECT doc FROM postern_control WHERE id = 1');
    const stored = rows[0] ? parseControl(rows[0].doc, 'postern_control') : emptyControl();
    if (await this.#atRest.load(stored)) await this.updateControl(() => undefined);
  }

  /**
   * Whether the database answers now: the change feed is connected and a query returns within
   * a bound. Never throws.
   */
  async health(): Promise<StoreHealth> {
    const pool = this.#pool;
    if (!pool || !this.feedConnected) return 'unavailable';
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), HEALTH_TIMEOUT_MS);
    });
    try {
      const answered = await Promise.race([pool.query('SELECT 1').then(() => true), timeout]);
      return answered ? 'available' : 'unavailable';
    } catch {
      return 'unavailable';
    } finally {
      clearTimeout(timer);
    }
  }

  /** Statements sent for appends and settles, and the calls they carried (group commit). */
  get stats(): StoreStats {
    return { ...this.#stats };
  }

  /** Whether the change feed's connection is up (readiness). */
  get feedConnected(): boolean {
    return this.#feed?.connected ?? false;
  }

  get #db(): pg.Pool {
    if (!this.#pool) throw new PosternError('ERR_UNAVAILABLE', 'the store is not open');
    return this.#pool;
  }

  /** A database error as the relay's typed error, without the URL's secrets. */
  #wrap(err: unknown): unknown {
    if (err instanceof PosternError) return err;
    // The data dir or the key file (errors of this machine's files, not of the database).
    if (typeof (err as { syscall?: unknown } | null)?.syscall === 'string' && !isNetwork(err)) {
      return err;
    }
    const e = scrubError(err, this.#opts.url);
    const message = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: unknown } | null)?.code;
    const away =
      (typeof code === 'string' && (UNAVAILABLE.has(code) || code.startsWith('08'))) ||
      /Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(
        message,
      );
    return away
      ? new PosternError('ERR_UNAVAILABLE', `the database is unavailable: ${message}`, {
          status: 503,
          cause: e,
        })
      : new PosternError('ERR_STORE_WRITE', `database: ${message}`, { cause: e });
  }

  /**
   * Runs one statement. A `name` prepares it once per connection (planned once: the statements
   * of every event, whose planning cost as much as their run).
   */
  async #q<R extends pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    name?: string,
  ): Promise<R[]> {
    try {
      return (await this.#db.query<R>({ text: sql, values: params, name })).rows;
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /** A lazy settle is visible at once: reads and claims wait for the ones queued. */
  async #seeLazy(): Promise<void> {
    if (this.#settles.busy) await this.#settles.flush();
  }

  // control plane

  async readControl(): Promise<ControlState> {
    const rows = await this.#q<{ doc: unknown }>('SELECT doc FROM postern_control WHERE id = 1');
    return rows[0] ? this.#openControl(rows[0].doc) : emptyControl();
  }

  /** The control row as read: parsed, its secrets opened. */
  #openControl(doc: unknown): ControlState {
    const state = parseControl(doc, 'postern_control');
    return this.#atRest ? this.#atRest.open(state) : state;
  }

  async updateControl(change: (state: ControlState) => void): Promise<ControlState> {
    let client: pg.PoolClient;
    try {
      client = await this.#db.connect();
    } catch (err) {
      throw this.#wrap(err);
    }
    let broken = false;
    /** The change's own error, thrown as it is. */
    let thrown = null as { err: unknown } | null;
    try {
      await client.query('BEGIN');
      try {
        const { rows } = await client.query<{ doc: unknown }>(
          'SELECT doc FROM postern_control WHERE id = 1 FOR UPDATE',
        );
        const state = rows[0] ? this.#openControl(rows[0].doc) : emptyControl();
        try {
          change(state);
        } catch (err) {
          thrown = { err };
          throw err;
        }
        await client.query(
          `UPDATE postern_control SET doc = $1::jsonb, version = version + 1 WHERE id = 1`,
          [toJsonb(this.#atRest ? this.#atRest.seal(state) : state)],
        );
        await client.query('SELECT pg_notify($1, $2)', [
          'postern_feed',
          note(this.#src, { t: 'c' }),
        ]);
        await client.query('COMMIT');
        this.#emit({ type: 'control' });
        return structuredClone(state);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw err;
      }
    } catch (err) {
      throw thrown ? thrown.err : this.#wrap(err);
    } finally {
      client.release(broken);
    }
  }

  // events

  async appendEvent(payload: EventPayload): Promise<EventSummary> {
    const { event } = await this.#appends.add({ payload, claim: null });
    this.#emit({ type: 'event', event: structuredClone(event) });
    if (event.status === 'queued') this.#emit({ type: 'work', channelId: event.channelId });
    return structuredClone(event);
  }

  async appendClaimed(payload: EventPayload, claim: AppendClaim): Promise<AppendedClaim> {
    if (payload.rejected) throw new TypeError('appendClaimed: a refused request is never claimed');
    const appended = await this.#appends.add({ payload, claim });
    const { event } = appended;
    this.#emit({ type: 'event', event: structuredClone(event) });
    if (appended.epoch === null) this.#emit({ type: 'work', channelId: event.channelId });
    // The body is in the caller's hands: nothing to read back.
    return { event: structuredClone(event), epoch: appended.epoch };
  }

  /**
   * One statement, one commit, for every event that came while the last one committed. Events
   * to be claimed are claimed in it, unless their channel has a due event that is not claimed
   * (looked at before the statement's own rows).
   */
  async #appendBatch(items: AppendItem[]): Promise<AppendedClaim[]> {
    const payloads = items.map((i) => i.payload);
    const summaries = payloads.map(initialSummary);
    // Replay protection keeps the latest event per key: one row per key per statement.
    const dedup = new Map<string, number>();
    payloads.forEach((p, i) => {
      if (!p.rejected && p.dedupKey !== undefined) dedup.set(`${p.channelId}\n${p.dedupKey}`, i);
    });
    const dedupRows = [...dedup.values()];
    const records = payloads.map(encodeEventRecord);
    let at = 1; // substring counts from 1
    const starts = records.map((r) => (at += r.length) - r.length);
    const notes = eventNotes(
      this.#src,
      summaries.map((s) => s.id),
    );
    // Claimed ones too: another relay learns of the lease, and claims if its owner dies.
    for (const channelId of new Set(
      summaries.filter((s) => s.status === 'queued').map((s) => s.channelId),
    )) {
      notes.push(note(this.#src, { t: 'w', c: channelId }));
    }
    const params = [
      summaries.map((s) => s.id),
      summaries.map((s) => s.channelId),
      summaries.map((s) => s.receivedAt),
      summaries.map((s) => s.status),
      summaries.map((s) => s.method),
      summaries.map((s) => s.path),
      summaries.map((s) => s.query),
      summaries.map((s) => s.size),
      summaries.map((s) => s.reason),
      summaries.map((s) => s.orderKey),
      // The records as one bytea with their lengths: a Buffer goes in binary, where an array of
      // them would go as hex text, twice the bytes.
      Buffer.concat(records),
      dedupRows.map((i) => payloads[i]!.channelId),
      dedupRows.map((i) => payloads[i]!.dedupKey!),
      dedupRows.map((i) => payloads[i]!.id),
      dedupRows.map((i) => payloads[i]!.receivedAt),
      notes,
      starts,
      records.map((r) => r.length),
      items.map((i) => i.claim?.owner ?? null),
      items.map((i) => (i.claim ? i.claim.now + i.claim.leaseMs : null)),
      // What is due is what is due at the latest claim's time: a stricter test for the others.
      Math.max(0, ...items.map((i) => i.claim?.now ?? 0)),
    ];
    const sql = `WITH given AS (
        SELECT t.id, t.channel_id, t.received_at, t.status, t.method, t.path, t.query, t.size,
               t.reason, t.order_key, substring($11::bytea FROM t.start FOR t.length) AS record,
               t.owner, t.lease_until
          FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $17::integer[],
            $18::integer[], $19::text[], $20::bigint[])
            AS t(id, channel_id, received_at, status, method, path, query, size, reason,
                 order_key, start, length, owner, lease_until)
      ), busy AS (
        -- Channels with a due event that is not claimed (ready, a retry or a lease run out):
        -- it comes before the new ones, which are queued behind it unclaimed.
        SELECT c.channel_id FROM (SELECT DISTINCT channel_id FROM given WHERE owner IS NOT NULL) c
         WHERE EXISTS (SELECT 1 FROM postern_pending p
                        WHERE p.channel_id = c.channel_id AND NOT p.waiting)
            OR EXISTS (SELECT 1 FROM postern_pending p
                        WHERE p.channel_id = c.channel_id AND p.waiting AND p.ready_at <= $21)
      ), input AS (
        SELECT g.*, g.owner IS NOT NULL AND g.status = 'queued'
                    AND g.channel_id NOT IN (SELECT channel_id FROM busy) AS claimed
          FROM given g
      ), ev AS (
        INSERT INTO postern_events (id, channel_id, received_at, status, method, path, query,
                                    size, reason, order_key)
        SELECT id, channel_id, received_at, status, method, path, query, size, reason, order_key
          FROM input
      ), pl AS (
        INSERT INTO postern_payloads (id, received_at, record)
        SELECT id, received_at, record FROM input
      ), pe AS (
        INSERT INTO postern_pending (event_id, channel_id, order_key, received_at, waiting,
                                     ready_at, claim_owner, claim_epoch, lease_until)
        SELECT id, channel_id, order_key, received_at, claimed,
               CASE WHEN claimed THEN lease_until ELSE 0 END,
               CASE WHEN claimed THEN owner END,
               CASE WHEN claimed THEN nextval('postern_claim_epoch') END,
               CASE WHEN claimed THEN lease_until END
          FROM input WHERE status = 'queued'
        RETURNING event_id, claim_epoch
      ), dd AS (
        INSERT INTO postern_dedup (channel_id, dedup_key, event_id, received_at)
        SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::bigint[])
        ON CONFLICT (channel_id, dedup_key) DO UPDATE
          SET event_id = excluded.event_id, received_at = excluded.received_at
      ), ct AS (
        INSERT INTO postern_counts (status, n)
        SELECT CASE WHEN claimed THEN 'delivering' ELSE status END, count(*) FROM input GROUP BY 1
      ), ms AS (
        INSERT INTO postern_minutes (minute, received)
        SELECT received_at - received_at % 60000, count(*) FROM input
         WHERE status <> 'rejected' GROUP BY 1
      ), nt AS (
        SELECT pg_notify('postern_feed', x) FROM unnest($16::text[]) AS x
      )
      SELECT event_id, claim_epoch FROM pe WHERE claim_epoch IS NOT NULL
      UNION ALL
      SELECT NULL, count(*) FROM nt`;
    let rows: EpochRow[];
    try {
      await this.#days.ensure(
        this.#db,
        summaries.map((s) => s.receivedAt),
      );
      rows = (await this.#db.query<EpochRow>({ name: 'postern_append', text: sql, values: params }))
        .rows;
    } catch (err) {
      // A day dropped by another relay's retention meanwhile: create it again, once.
      if ((err as { code?: unknown }).code !== '23514') throw this.#wrap(err);
      this.#days.forget();
      try {
        await this.#days.ensure(
          this.#db,
          summaries.map((s) => s.receivedAt),
        );
        rows = (
          await this.#db.query<EpochRow>({ name: 'postern_append', text: sql, values: params })
        ).rows;
      } catch (again) {
        throw this.#wrap(again);
      }
    }
    this.#stats.appendStatements++;
    this.#stats.appendedEvents += payloads.length;
    const refused = new Set(payloads.filter((p) => p.rejected).map((p) => p.channelId));
    if (refused.size > 0) await this.#boundRejected([...refused]);
    const epochs = new Map<string, number>();
    for (const row of rows)
      if (row.event_id !== null) epochs.set(row.event_id, Number(row.claim_epoch));
    const out = summaries.map((event): AppendedClaim => {
      const epoch = epochs.get(event.id);
      return epoch === undefined
        ? { event, epoch: null }
        : { event: { ...event, status: 'delivering' }, epoch };
    });
    return out;
  }

  /**
   * Keeps at most MAX_REJECTED_PER_CHANNEL refusals per channel, the newest. After the append's
   * own commit: a crash in between leaves a few more, which the next refusal removes.
   */
  async #boundRejected(channelIds: string[]): Promise<void> {
    const sql = `WITH old AS (
        SELECT o.id, o.received_at FROM unnest($1::text[]) AS c(channel_id)
          CROSS JOIN LATERAL (
            SELECT e.id, e.received_at FROM postern_events e
              WHERE e.channel_id = c.channel_id AND e.status = 'rejected'
              ORDER BY e.id DESC OFFSET $2) o
      ), ev AS (
        DELETE FROM postern_events e USING old
          WHERE e.id = old.id AND e.received_at = old.received_at AND e.status = 'rejected'
          RETURNING e.id
      ), pl AS (
        DELETE FROM postern_payloads p USING old
          WHERE p.id = old.id AND p.received_at = old.received_at
      ), ct AS (
        INSERT INTO postern_counts (status, n)
          SELECT 'rejected', -count(*) FROM ev HAVING count(*) > 0
      )
      SELECT count(*) AS n FROM ev`;
    try {
      await this.#db.query(sql, [channelIds, MAX_REJECTED_PER_CHANNEL]);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  async updateEvent(
    id: string,
    update: EventUpdate,
    opts: { expect?: readonly EventStatus[] } = {},
  ): Promise<EventSummary> {
    await this.#seeLazy();
    const rows = await this.#q<{ r: unknown }>(
      'SELECT postern_update_event($1, $2, $3::jsonb, $4::text[]) AS r',
      [this.#src, id, toJsonb(storedUpdate(update)), opts.expect ? [...opts.expect] : null],
    );
    const r = rows[0]?.r;
    if (!isObject(r) || r['missing'] === true) {
      throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    }
    if (typeof r['conflict'] === 'string') {
      throw new PosternError(
        'ERR_CONFLICT',
        `event ${id} is ${r['conflict']}, expected ${(opts.expect ?? []).join(' or ')}`,
        { status: 409 },
      );
    }
    const event = parseSummary(r['event']);
    this.#emit({ type: 'event', event: structuredClone(event) });
    if (r['work'] === true) this.#emit({ type: 'work', channelId: event.channelId });
    return event;
  }

  async getEvent(id: string): Promise<EventSummary | undefined> {
    await this.#seeLazy();
    const rows = await this.#q<{ s: unknown }>(`${SUMMARIES} WHERE e.id = $1 LIMIT 1`, [id]);
    return rows[0] ? parseSummary(rows[0].s) : undefined;
  }

  async readPayload(id: string): Promise<EventPayload> {
    const early = this.#prefetched.get(id);
    if (early) this.#prefetched.delete(id);
    const buf = early ?? (await this.#reads.add(id));
    if (!buf) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    const record = decodeRecord(buf);
    if (record.kind !== 'event') {
      throw new PosternError('ERR_STORE_CORRUPT', `event ${id} is stored as a non-event record`);
    }
    return record.payload;
  }

  async #readBatch(ids: string[]): Promise<(Buffer | undefined)[]> {
    const rows = await this.#q<{ id: string; record: Buffer }>(
      'SELECT id, record FROM postern_payloads WHERE id = ANY($1::text[])',
      [ids],
      'postern_read',
    );
    const byId = new Map(rows.map((r) => [r.id, r.record]));
    return ids.map((id) => byId.get(id));
  }

  async listEvents(filter: EventFilter): Promise<ListPage> {
    await this.#seeLazy();
    const { channelId, status, before, since, until, limit } = filter;
    if (before !== undefined) {
      const known = await this.#q('SELECT 1 FROM postern_events WHERE id = $1 LIMIT 1', [before]);
      if (known.length === 0) {
        throw new PosternError('ERR_BAD_REQUEST', `unknown cursor ${before}`, { status: 400 });
      }
    }
    if (limit < 1) return { events: [], next: null };
    const params: unknown[] = [limit + 1];
    const where: string[] = [];
    const arg = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    let sql: string;
    if (status === 'delivering') {
      if (channelId !== undefined) where.push(`p.channel_id = ${arg(channelId)}`);
      if (before !== undefined) where.push(`p.event_id < ${arg(before)}`);
      if (since !== undefined) where.push(`p.received_at >= ${arg(since)}`);
      if (until !== undefined) where.push(`p.received_at < ${arg(until)}`);
      sql = `SELECT postern_summary(e, true) AS s
               FROM postern_pending p
               JOIN postern_events e ON e.id = p.event_id AND e.received_at = p.received_at
              WHERE p.claim_owner IS NOT NULL ${where.map((w) => `AND ${w}`).join(' ')}
              ORDER BY p.event_id DESC LIMIT $1`;
    } else {
      if (channelId !== undefined) where.push(`e.channel_id = ${arg(channelId)}`);
      if (status !== undefined) where.push(`e.status = ${arg(status)}`);
      if (before !== undefined) where.push(`e.id < ${arg(before)}`);
      // On the partitioning column: only the days of the range are read.
      if (since !== undefined) where.push(`e.received_at >= ${arg(since)}`);
      if (until !== undefined) where.push(`e.received_at < ${arg(until)}`);
      const cond = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
      sql =
        status === undefined
          ? `${SUMMARIES} ${cond} ORDER BY e.id DESC LIMIT $1`
          : status === 'queued'
            ? `SELECT postern_summary(e, false) AS s FROM postern_events e ${cond}
                 AND NOT EXISTS (SELECT 1 FROM postern_pending p
                                  WHERE p.event_id = e.id AND p.claim_owner IS NOT NULL)
                 ORDER BY e.id DESC LIMIT $1`
            : `SELECT postern_summary(e, false) AS s FROM postern_events e ${cond}
                 ORDER BY e.id DESC LIMIT $1`;
    }
    const rows = await this.#q<{ s: unknown }>(sql, params);
    const events = rows.map((r) => parseSummary(r.s));
    if (events.length <= limit) return { events, next: null };
    events.length = limit;
    return { events, next: events.at(-1)!.id };
  }

  async searchEvents(search: EventSearch): Promise<SearchPage> {
    return searchEvents(
      {
        listEvents: (filter) => this.listEvents(filter),
        getEvent: (id) => this.getEvent(id),
        // One query per group, beside dispatch's batched reads (its prefetched ones untouched).
        readPayloads: async (ids) =>
          (await this.#readBatch([...ids])).map((buf) => {
            if (!buf) return undefined;
            const record = decodeRecord(buf);
            return record.kind === 'event' ? record.payload : undefined;
          }),
      },
      search,
    );
  }

  async countByStatus(): Promise<Record<EventStatus, number>> {
    await this.#seeLazy();
    const rows = await this.#q<{ status: string; n: string; rows: string }>(
      'SELECT status, sum(n) AS n, count(*) AS rows FROM postern_counts GROUP BY status',
    );
    const out = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<EventStatus, number>;
    let deltas = 0;
    for (const row of rows) {
      if ((STATUSES as readonly string[]).includes(row.status)) {
        out[row.status as EventStatus] = Number(row.n);
      }
      deltas += Number(row.rows);
    }
    if (deltas > COMPACT_ROWS) void this.#compactCounts().catch(() => undefined);
    return out;
  }

  /** Folds the status deltas into one row per status (one relay at a time). */
  async #compactCounts(): Promise<void> {
    await this.#q(
      `WITH l AS (SELECT pg_try_advisory_xact_lock(hashtext('postern_counts')) AS ok),
            gone AS (DELETE FROM postern_counts WHERE (SELECT ok FROM l) RETURNING status, n)
       INSERT INTO postern_counts (status, n)
       SELECT status, sum(n) FROM gone GROUP BY status HAVING sum(n) <> 0`,
    );
  }

  async findByDedupKey(
    channelId: string,
    dedupKey: string,
    since: number,
  ): Promise<string | undefined> {
    const rows = await this.#q<{ event_id: string }>(
      `SELECT event_id FROM postern_dedup
        WHERE channel_id = $1 AND dedup_key = $2 AND received_at >= $3`,
      [channelId, dedupKey, since],
    );
    return rows[0]?.event_id;
  }

  async removeFinishedBefore(cutoff: number): Promise<number> {
    await this.#seeLazy();
    try {
      const removed = await removeFinished(this.#db, cutoff);
      this.#prefetched.clear(); // a removed event reads as missing
      for (const day of removed.droppedDays) this.#days.forget(day);
      await pruneDedup(this.#db);
      await this.#compactCounts();
      await foldMinutes(this.#db, cutoff);
      let n = 0;
      for (const [status, count] of removed.byStatus) {
        if (FINISHED_STATUSES.has(status as EventStatus)) n += count;
      }
      if (removed.droppedDays.length > 0) {
        this.#log.info({ days: removed.droppedDays.length }, 'retention: dropped whole days');
      }
      return n;
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  async minuteStats(range: { since: number; until: number }): Promise<MinuteStats[]> {
    await this.#seeLazy();
    try {
      return await readMinutes(this.#db, range);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  // dispatch

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    // One statement: not after the lazy settles under way (rule 2: their events stay claimed
    // until committed, and each reports work on its channel then); no WAL flush wait (a claim
    // lost in a crash of the server leaves its events unclaimed, to be offered again); and the
    // records of the events claimed (PREFETCH_BYTES or less), which dispatch reads next.
    const rows = await this.#q<{ r: unknown; id: string | null; record: Buffer | null }>(
      `WITH c AS MATERIALIZED (
         SELECT ${NO_FLUSH}, postern_claim($1, $2, $3, $4, $5, $6, $7) AS r
       )
       SELECT c.r, NULL AS id, NULL::bytea AS record FROM c
       UNION ALL
       SELECT NULL, p.id, p.record FROM postern_payloads p
        WHERE p.id = ANY (ARRAY(
                SELECT x->'event'->>'id' FROM c, jsonb_array_elements(c.r->'claims') x
                 WHERE (x->'event'->>'size')::bigint <= $8))`,
      [
        this.#src,
        request.owner,
        request.channelId,
        request.ordered,
        Math.max(0, Math.floor(request.limit)),
        request.now,
        request.leaseMs,
        PREFETCH_BYTES,
      ],
      'postern_claim',
    );
    for (const row of rows) if (row.id !== null) this.#prefetched.set(row.id, row.record!);
    for (const id of this.#prefetched.keys()) {
      if (this.#prefetched.size <= PREFETCH_MAX) break;
      this.#prefetched.delete(id);
    }
    const r = rows.find((row) => row.id === null)?.r;
    if (!isObject(r) || !Array.isArray(r['claims'])) {
      throw new PosternError('ERR_STORE_CORRUPT', 'postern_claim: unexpected result');
    }
    const claims = r['claims'].map((c: unknown) => {
      if (!isObject(c) || typeof c['epoch'] !== 'number') {
        throw new PosternError('ERR_STORE_CORRUPT', 'postern_claim: a claim without an epoch');
      }
      return { event: parseSummary(c['event']), epoch: c['epoch'] };
    });
    for (const c of claims) this.#emit({ type: 'event', event: structuredClone(c.event) });
    const wake = r['wakeAt'];
    return { claims, wakeAt: typeof wake === 'number' ? wake : null };
  }

  async settle(
    claim: ClaimRef,
    update: EventUpdate,
    opts: { lazy?: boolean } = {},
  ): Promise<EventSummary | null> {
    const lazy = opts.lazy === true;
    const item = { id: claim.id, epoch: claim.epoch, update: storedUpdate(update), lazy };
    const event = await this.#settles.add(item, { lazy });
    if (event) {
      this.#emit({ type: 'event', event: structuredClone(event) });
      this.#emit({ type: 'work', channelId: event.channelId });
    }
    return event && structuredClone(event);
  }

  async #settleBatch(items: SettleItem[]): Promise<(EventSummary | null)[]> {
    const lazy = items.every((i) => i.lazy);
    const rows = await this.#q<{ r: unknown }>(
      `SELECT ${lazy ? `${NO_FLUSH}, ` : ''}postern_settle($1, $2::jsonb) AS r`,
      [this.#src, toJsonb(items.map(({ id, epoch, update }) => ({ id, epoch, update })))],
      lazy ? 'postern_settle_lazy' : 'postern_settle',
    );
    this.#stats.settleStatements++;
    this.#stats.settles += items.length;
    this.#churn += items.length;
    const r = rows[0]?.r;
    if (!Array.isArray(r) || r.length !== items.length) {
      throw new PosternError('ERR_STORE_CORRUPT', 'postern_settle: unexpected result');
    }
    return r.map((s: unknown) => (s === null ? null : parseSummary(s)));
  }

  async release(claim: ClaimRef, opts: { notBefore?: number } = {}): Promise<boolean> {
    await this.#seeLazy();
    const rows = await this.#q<{ r: unknown }>('SELECT postern_release($1, $2, $3, $4) AS r', [
      this.#src,
      claim.id,
      claim.epoch,
      opts.notBefore ?? null,
    ]);
    const r = rows[0]?.r;
    if (r === null || r === undefined) return false;
    const event = parseSummary(r);
    this.#emit({ type: 'event', event });
    this.#emit({ type: 'work', channelId: event.channelId });
    return true;
  }

  async renewClaims(
    owner: string,
    claims: readonly ClaimRef[],
    now: number,
    leaseMs: number,
  ): Promise<number> {
    if (claims.length === 0) return 0;
    try {
      // SKIP LOCKED: a row locked by a settle or release of this relay in flight is about to
      // leave the claim anyway; waiting for it would deadlock with a settle batch that locks
      // the same rows in another order. A row skipped is renewed a third of a lease later.
      const r = await this.#db.query(
        `UPDATE postern_pending SET lease_until = $2::bigint + $3::bigint,
                ready_at = $2::bigint + $3::bigint, waiting = true
          WHERE event_id IN (SELECT p.event_id FROM postern_pending p
                               JOIN unnest($4::text[], $5::bigint[]) AS c(id, epoch)
                                 ON p.event_id = c.id AND p.claim_epoch = c.epoch
                              WHERE p.claim_owner = $1 AND p.lease_until > $2
                              FOR UPDATE OF p SKIP LOCKED)`,
        [owner, now, leaseMs, claims.map((c) => c.id), claims.map((c) => c.epoch)],
      );
      return r.rowCount ?? 0;
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  // shared between relays (rule 8): see shared.ts

  takeToken(key: string, limit: RateLimit, now: number): Promise<number> {
    return this.#shared.takeToken(key, limit, now);
  }

  publishResponse(response: AppResponse, until: number): Promise<void> {
    return this.#shared.publishResponse(response, until);
  }

  readResponse(eventId: string, now: number): Promise<AppResponse | undefined> {
    return this.#shared.readResponse(eventId, now);
  }

  putPresence(owner: string, agents: readonly string[], until: number): Promise<void> {
    return this.#shared.putPresence(owner, agents, until);
  }

  readPresence(now: number): Promise<Presence[]> {
    return this.#shared.readPresence(now);
  }

  subscribe(listener: (change: StoreChange) => void, opts: SubscribeOptions = {}): () => void {
    this.#listeners.set(listener, opts.events !== false);
    return () => this.#listeners.delete(listener);
  }

  #emit(change: StoreChange): void {
    for (const [listener, events] of this.#listeners) {
      if (!events && change.type === 'event') continue;
      try {
        listener(change);
      } catch (err) {
        this.#log.warn({ err: String(err) }, 'change feed: a listener threw');
      }
    }
  }

  /** Whether a listener wants `event` changes. */
  #watched(): boolean {
    for (const events of this.#listeners.values()) if (events) return true;
    return false;
  }

  /** A change another relay made (or this one, through another instance). */
  #remote(change: RemoteChange): void {
    if (change.type !== 'events') {
      this.#emit(change);
      return;
    }
    // Changed events come as ids: read only for a listener that shows them.
    if (!this.#watched()) return;
    this.#q<{ s: unknown }>(`${SUMMARIES} WHERE e.id = ANY ($1::text[]) ORDER BY e.id`, [
      change.ids,
    ]).then(
      (rows) => {
        for (const row of rows) this.#emit({ type: 'event', event: parseSummary(row.s) });
      },
      (err: unknown) => this.#log.warn({ err: String(err) }, 'change feed: reading events'),
    );
  }

  /** Back after a loss of the feed: whatever was missed, dispatch and views look again. */
  #resume(): void {
    this.#emit({ type: 'control' });
    this.readControl().then(
      (state) => {
        for (const c of state.channels) this.#emit({ type: 'work', channelId: c.id });
      },
      (err: unknown) => this.#log.warn({ err: String(err) }, 'change feed: reading channels'),
    );
  }

  async #ensureDaysAhead(): Promise<void> {
    const now = this.#now();
    const days = Array.from({ length: DAYS_AHEAD + 1 }, (_, i) => now + i * DAY_MS);
    try {
      await this.#days.ensure(this.#db, days);
    } catch (err) {
      throw this.#wrap(err);
    }
  }

  /**
   * VACUUM of the queue table once enough of its rows finished, by one relay at a time (the
   * others skip their turn): its dead rows then never slow claims down.
   */
  async #vacuumQueue(): Promise<void> {
    if (!this.#pool || this.#churn < VACUUM_AFTER_ROWS) return;
    let client: pg.PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      const { rows } = await client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock($1) AS locked',
        [VACUUM_LOCK],
      );
      if (!rows[0]?.locked) return;
      try {
        this.#churn = 0;
        await client.query('VACUUM postern_pending');
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [VACUUM_LOCK]);
      }
    } catch (err) {
      this.#log.warn(
        { err: String(this.#wrap(err)) },
        'could not vacuum the queue table; will try again',
      );
    } finally {
      client?.release();
    }
  }

  async #maintain(): Promise<void> {
    if (!this.#pool) return;
    try {
      await this.#ensureDaysAhead();
      await this.#compactCounts();
      await this.#shared.prune();
    } catch (err) {
      this.#log.warn({ err: String(err) }, 'store maintenance failed; will try again');
    }
  }
}
