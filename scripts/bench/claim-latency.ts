/**
 * `npm run bench:claims`: does PostgreSQL's queue stay fast as it ages? The time to claim the
 * next batch of events on an empty database, then again after N events (1,000,000 by default)
 * have gone through (appended, claimed, settled delivered) and been retained; target: no more
 * than twice as long. Drives the PostgresStore directly, in this process (no HTTP, no relay),
 * on a fresh database that it drops at the end.
 *
 * Each sample: append a batch, claim it (timed: one `claim` call, one round trip), settle it.
 * The aged sample is taken right after the N events, before any VACUUM of ours: whatever dead
 * rows they left are still there, as in a relay that has just drained a burst. A third sample
 * follows a VACUUM of the pending table: what the server's autovacuum gets back to.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { eventIdGenerator } from '../../server/ids.ts';
import { PostgresStore } from '../../server/store/postgres/store.ts';
import { redactUrl } from '../../server/store/postgres/url.ts';
import type { EventPayload } from '../../server/store/types.ts';
import {
  createDatabase,
  dropDatabase,
  LOCAL_SERVER_URL,
  onServer,
  randomDatabaseName,
} from '../scratch-database.ts';
import { jsonBody } from './load-job.ts';

const USAGE = `Usage: npm run bench:claims -- [options]

  --events N        events through the store before the second measure (default 1000000;
                    --quick 20000)
  --batch N         events per claim measured                     (default 50)
  --samples N       claims measured on each side                  (default 200; --quick 50)
  --body-bytes N    size of each event's body                     (default 1024)
  --database-url U  the PostgreSQL server (default POSTERN_TEST_DATABASE_URL, else
                    ${LOCAL_SERVER_URL})
  --timeout S       stop pushing events after S seconds and measure what went through
                    (default 1200; --quick 120)
  --quick           a smoke run with the small values above
`;

/** Claimers working through the N events at once (each claims what any of them appended). */
const WORKERS = 4;
/** Events each worker appends before it claims and settles them. */
const CHUNK = 1_000;
/** Events per claim while pushing (not measured). */
const PUSH_CLAIM = 250;
const LEASE_MS = 60_000;
const CHANNEL = 'ch_claimbench';

type Options = {
  events: number;
  batch: number;
  samples: number;
  bodyBytes: number;
  databaseUrl: string;
  timeoutS: number;
};

function count(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected a whole number of at least ${min}, got "${raw}"`);
  }
  return n;
}

function parseOptions(argv: string[], envUrl: string | undefined): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string' },
      batch: { type: 'string' },
      samples: { type: 'string' },
      'body-bytes': { type: 'string' },
      'database-url': { type: 'string' },
      timeout: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const quick = values.quick;
  return {
    events: count('events', values.events, quick ? 20_000 : 1_000_000, 1),
    batch: count('batch', values.batch, 50, 1),
    samples: count('samples', values.samples, quick ? 50 : 200, 1),
    bodyBytes: count('body-bytes', values['body-bytes'], 1024, 2),
    databaseUrl: values['database-url'] ?? envUrl ?? LOCAL_SERVER_URL,
    timeoutS: count('timeout', values.timeout, quick ? 120 : 1200, 1),
  };
}

type Latency = { samples: number; p50Ms: number; p90Ms: number; maxMs: number };

function latency(ms: number[]): Latency {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { samples: s.length, p50Ms: at(0.5), p90Ms: at(0.9), maxMs: s[s.length - 1] ?? 0 };
}

class Pusher {
  readonly #store: PostgresStore;
  readonly #nextId = eventIdGenerator();
  readonly #body: Buffer;

  constructor(store: PostgresStore, bodyBytes: number) {
    this.#store = store;
    this.#body = Buffer.from(jsonBody(bodyBytes));
  }

  payload(): EventPayload {
    const now = Date.now();
    return {
      id: this.#nextId(),
      channelId: CHANNEL,
      receivedAt: now,
      method: 'POST',
      path: '/',
      query: '',
      headers: [['content-type', 'application/json']],
      originalUrl: `http://127.0.0.1/h/${CHANNEL}`,
      remoteAddress: '127.0.0.1',
      body: this.#body,
    };
  }

  /** Appends `n` events, concurrently (the store commits them in groups). */
  async append(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.#store.appendEvent(this.payload())));
  }

  /** Claims up to `limit` for `owner`; returns the claims and the call's time in ms. */
  async claim(owner: string, limit: number) {
    const t0 = process.hrtime.bigint();
    const r = await this.#store.claim({
      owner,
      channelId: CHANNEL,
      ordered: false,
      limit,
      now: Date.now(),
      leaseMs: LEASE_MS,
    });
    return { claims: r.claims, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  }

  /** Settles every claim delivered, as a relay does when its agent acknowledges. */
  async settleDelivered(claims: { event: { id: string }; epoch: number }[]): Promise<void> {
    const at = Date.now();
    const settled = await Promise.all(
      claims.map((c) =>
        this.#store.settle(
          { id: c.event.id, epoch: c.epoch },
          {
            status: 'delivered',
            attemptCount: 1,
            nextAttemptAt: 0,
            attempt: {
              at,
              agentId: 'ag_claimbench',
              outcome: 'delivered',
              status: 200,
              durationMs: 1,
              error: null,
            },
          },
        ),
      ),
    );
    const lost = settled.filter((s) => s === null).length;
    if (lost > 0) throw new Error(`${lost} settles found their claim gone`);
  }
}

/** `samples` times: append a batch, claim it (timed), settle it. */
async function measure(p: Pusher, opts: Options, label: string): Promise<Latency> {
  const times: number[] = [];
  for (let i = 0; i < opts.samples; i++) {
    await p.append(opts.batch);
    const { claims, ms } = await p.claim('measure', opts.batch);
    if (claims.length !== opts.batch) {
      throw new Error(`${label}: claimed ${claims.length} of ${opts.batch} events`);
    }
    times.push(ms);
    await p.settleDelivered(claims);
  }
  return latency(times);
}

/** Pushes `n` events through the store, or as many as fit before `deadline`. */
async function push(p: Pusher, n: number, deadline: number, progress: (s: string) => void) {
  let appended = 0;
  let settled = 0;
  let lastReport = Date.now();
  const worker = async (w: number) => {
    for (;;) {
      if (Date.now() > deadline) return;
      const take = Math.min(CHUNK, n - appended);
      if (take > 0) {
        appended += take;
        await p.append(take);
      }
      // Claim what is there (any worker's), until this worker finds nothing.
      for (;;) {
        const { claims } = await p.claim(`pusher-${w}`, PUSH_CLAIM);
        if (claims.length === 0) break;
        await p.settleDelivered(claims);
        settled += claims.length;
        if (Date.now() - lastReport > 10_000) {
          lastReport = Date.now();
          progress(`${settled.toLocaleString('en-US')} of ${n.toLocaleString('en-US')} settled`);
        }
      }
      if (appended >= n) return;
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  return { appended, settled };
}

/** The pending table (its size, its dead rows) and the event log, as the server sees them. */
async function tableFacts(url: string) {
  return onServer(url, async (c) => {
    const { rows } = await c.query<{
      bytes: string;
      dead: string;
      live: string;
      autovacuums: string;
    }>(
      `SELECT pg_total_relation_size(relid) AS bytes, n_dead_tup AS dead, n_live_tup AS live,
              autovacuum_count AS autovacuums
         FROM pg_stat_user_tables WHERE relname = 'postern_pending'`,
    );
    const { rows: ev } = await c.query<{ bytes: string }>(
      `SELECT coalesce(sum(pg_total_relation_size(relid)), 0) AS bytes FROM pg_stat_user_tables
        WHERE relname LIKE 'postern_events%' OR relname LIKE 'postern_payloads%'`,
    );
    const pending = rows[0];
    return {
      pendingBytes: Number(pending?.bytes ?? 0),
      pendingDeadRows: Number(pending?.dead ?? 0),
      pendingLiveRows: Number(pending?.live ?? 0),
      pendingAutovacuums: Number(pending?.autovacuums ?? 0),
      eventLogBytes: Number(ev[0]?.bytes ?? 0),
    };
  });
}

async function main(opts: Options): Promise<boolean> {
  const started = Date.now();
  const progress = (s: string) =>
    process.stderr.write(
      `[claims ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${s}\n`,
    );
  const name = randomDatabaseName('postern_claims');
  const url = await createDatabase(opts.databaseUrl, name);
  progress(`database ${name} on ${redactUrl(opts.databaseUrl)}`);
  const store = new PostgresStore({ url, poolSize: 8 });
  try {
    await store.open();
    const p = new Pusher(store, opts.bodyBytes);
    // A few claims first, so that the first measure does not pay for cold plans and pools.
    await measure(p, { ...opts, samples: 10 }, 'warm-up');
    const empty = await measure(p, opts, 'empty');
    const emptyFacts = await tableFacts(url);
    progress(`empty database: claim of ${opts.batch}, p50 ${empty.p50Ms.toFixed(2)} ms`);

    progress(`pushing ${opts.events.toLocaleString('en-US')} events through the store`);
    const t0 = Date.now();
    const pushed = await push(p, opts.events, started + opts.timeoutS * 1000, progress);
    const pushS = (Date.now() - t0) / 1000;
    progress(
      `${pushed.settled.toLocaleString('en-US')} settled in ${pushS.toFixed(0)} s ` +
        `(${Math.round(pushed.settled / pushS)}/s)`,
    );
    const agedFacts = await tableFacts(url);
    const aged = await measure(p, opts, 'aged');
    progress(
      `aged: claim of ${opts.batch}, p50 ${aged.p50Ms.toFixed(2)} ms; VACUUM postern_pending`,
    );
    await onServer(url, (c) => c.query('VACUUM (ANALYZE) postern_pending'));
    const vacuumed = await measure(p, opts, 'vacuumed');
    const ratio = aged.p50Ms / empty.p50Ms;
    const complete = pushed.settled >= opts.events;
    const int = (n: number) => n.toLocaleString('en-US');
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const lat = (l: Latency) =>
      `${l.p50Ms.toFixed(2)} / ${l.p90Ms.toFixed(2)} / ${l.maxMs.toFixed(2)} ms`;
    const rows: [string, string][] = [
      [`claim of ${opts.batch}, empty database: p50 / p90 / max`, lat(empty)],
      [`claim of ${opts.batch}, after ${int(pushed.settled)} retained: p50 / p90 / max`, lat(aged)],
      [`the same after VACUUM of postern_pending: p50 / p90 / max`, lat(vacuumed)],
      [
        'aged / empty (p50)',
        `${ratio.toFixed(2)}× (target ≤ 2×: ${complete ? (ratio <= 2 ? 'met' : 'NOT met') : 'not judged, run cut short'})`,
      ],
      ['vacuumed / empty (p50)', `${(vacuumed.p50Ms / empty.p50Ms).toFixed(2)}×`],
      ['samples each side', int(opts.samples)],
      [
        'events pushed through (appended, claimed, settled)',
        `${int(pushed.settled)} in ${pushS.toFixed(0)} s`,
      ],
      [
        'postern_pending: size, live / dead rows (empty → aged)',
        `${mib(emptyFacts.pendingBytes)} → ${mib(agedFacts.pendingBytes)}, ` +
          `${int(agedFacts.pendingLiveRows)} / ${int(agedFacts.pendingDeadRows)}`,
      ],
      ['autovacuums of postern_pending before the aged claims', int(agedFacts.pendingAutovacuums)],
      ['event log (events + payloads), aged', mib(agedFacts.eventLogBytes)],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    process.stdout.write(`${rows.map(([a, b]) => `${a.padEnd(w)}  ${b}`).join('\n')}\n`);
    return complete;
  } finally {
    await store.close().catch(() => undefined);
    // The store's own connections are closed; give the server a moment before the drop.
    await sleep(100);
    await dropDatabase(opts.databaseUrl, name);
    progress(`database ${name} dropped`);
  }
}

function start(): void {
  let opts: Options | null;
  try {
    opts = parseOptions(process.argv.slice(2), process.env['POSTERN_TEST_DATABASE_URL']);
  } catch (err) {
    process.stderr.write(`bench:claims: ${err instanceof Error ? err.message : String(err)}\n`);
    process.stderr.write(USAGE);
    process.exitCode = 2;
    return;
  }
  if (!opts) {
    process.stdout.write(USAGE);
    return;
  }
  main(opts).then(
    (complete) => {
      if (!complete) process.stderr.write('bench:claims: stopped before all events went through\n');
      process.exitCode = complete ? 0 : 1;
    },
    (err: unknown) => {
      process.stderr.write(
        `bench:claims: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    },
  );
}

start();
