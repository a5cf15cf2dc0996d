/**
 * What is particular to the PostgreSQL store: URL redaction, migrations (advisory lock, a newer
 * schema refused, the printed SQL), retention by whole days, group commit, and several store
 * instances on one database (claims and ordered keys exclusive across them, the feed between
 * them, the feed's reconnect).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PosternError } from '../../shared/errors.ts';
import {
  applyMigrations,
  loadMigrations,
  migrationSql,
} from '../../server/store/postgres/migrate.ts';
import { createPool } from '../../server/store/postgres/pool.ts';
import { PostgresStore } from '../../server/store/postgres/store.ts';
import { redactSecrets, redactUrl } from '../../server/store/postgres/url.ts';
import type { EventPayload, EventSummary, Store, StoreChange } from '../../server/store/types.ts';
import { createDatabase, dropDatabase, randomDatabaseName } from '../helpers/postgres.ts';

const DAY = 86_400_000;
/** A fixed UTC midnight: the days of these tests are D0, D0 + DAY, … */
const D0 = Date.UTC(2024, 0, 10);

const base = randomDatabaseName('postern_pg');
let next = 0;

/** A fresh database for one test, dropped after it. */
async function freshDb(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const name = `${base}_${++next}`;
  const url = await createDatabase(name);
  t.after(() => dropDatabase(name));
  return url;
}

async function openStore(
  t: { after(fn: () => Promise<void>): void },
  url: string,
  opts: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {},
): Promise<PostgresStore> {
  const store = new PostgresStore({ url, poolSize: 4, ...opts });
  await store.open();
  t.after(() => store.close());
  return store;
}

function payload(i: number, opts: Partial<EventPayload> = {}): EventPayload {
  return {
    id: `evt_${String(i).padStart(26, '0')}`,
    channelId: 'ch_a',
    receivedAt: D0 + i,
    method: 'POST',
    path: '',
    query: '',
    headers: [['content-type', 'application/json']],
    originalUrl: 'https://relay.example/h/ch_a',
    remoteAddress: '127.0.0.1',
    body: Buffer.from(`{"n":${i}}`),
    ...opts,
  };
}

async function query<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Resolves once `predicate` holds for the changes seen, or fails after `ms`. */
function waitFor(
  changes: StoreChange[],
  predicate: (seen: StoreChange[]) => boolean,
  what: string,
  ms = 10_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (predicate(changes)) return resolve();
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

function record(store: Store): StoreChange[] {
  const seen: StoreChange[] = [];
  store.subscribe((c) => seen.push(c));
  return seen;
}

describe('database URLs', () => {
  test('redactUrl masks the password, in userinfo and as a parameter', () => {
    assert.equal(
      redactUrl('postgres://relay:s3cr%40t@db.example:5432/postern?sslmode=require'),
      'postgres://relay:***@db.example:5432/postern?sslmode=require',
    );
    assert.equal(
      redactUrl('postgres://relay@db.example/postern?password=hunter2&sslmode=verify-full'),
      'postgres://relay@db.example/postern?password=***&sslmode=verify-full',
    );
    assert.equal(redactUrl('postgres://db.example/postern'), 'postgres://db.example/postern');
    assert.equal(redactUrl('not a url://u:pw@h'), 'not a url://u:***@h');
  });

  test('redactSecrets scrubs the URL and its password, raw and decoded, from a message', () => {
    const url = 'postgres://relay:s3cr%40t@db.example/postern';
    const msg = `connect to ${url} failed; password s3cr@t rejected (s3cr%40t)`;
    const clean = redactSecrets(msg, url);
    assert.ok(!clean.includes('s3cr'), clean);
    assert.ok(clean.includes('postgres://relay:***@db.example/postern'), clean);
  });

  test('a store that cannot connect fails with ERR_UNAVAILABLE and no password', async () => {
    // A port that was just free: nothing listens there.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const store = new PostgresStore({ url: `postgres://relay:pw-9f3k2@127.0.0.1:${port}/x` });
    await assert.rejects(store.open(), (err: unknown) => {
      assert.ok(err instanceof PosternError);
      assert.equal(err.code, 'ERR_UNAVAILABLE');
      assert.equal(err.status, 503);
      assert.ok(!String(err.message).includes('pw-9f3k2'));
      assert.ok(!String(err.stack).includes('pw-9f3k2'));
      return true;
    });
  });

  test('the pool size is bounded and checked', () => {
    assert.throws(() => createPool({ url: 'postgres://127.0.0.1/x', max: 0 }), /pool size/);
    const pool = createPool({ url: 'postgres://127.0.0.1/x', max: 3 });
    assert.equal(pool.options.max, 3);
    void pool.end();
  });
});

describe('migrations', () => {
  test('two relays opening at once apply each migration once', async (t) => {
    const url = await freshDb(t);
    const pools = [createPool({ url, max: 2 }), createPool({ url, max: 2 })];
    t.after(() => Promise.all(pools.map((p) => p.end())).then(() => undefined));
    const results = await Promise.all(pools.map((p) => applyMigrations(p)));
    const known = loadMigrations().map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);
    assert.deepEqual(results.map((r) => r.applied).flat(), known, 'applied once in all');
    assert.deepEqual(
      results.map((r) => r.to),
      [known.length, known.length],
    );
    const rows = await query<{ version: number }>(url, 'SELECT version FROM postern_schema');
    assert.deepEqual(
      rows.map((r) => r.version),
      known.map((_, i) => i + 1),
    );
    // Two stores opening at once on the migrated database: both serve.
    const [a, b] = await Promise.all([openStore(t, url), openStore(t, url)]);
    assert.equal((await a.appendEvent(payload(1))).status, 'queued');
    assert.equal((await b.getEvent(payload(1).id))?.status, 'queued');
  });

  test('a schema newer than the code is refused, naming both versions', async (t) => {
    const url = await freshDb(t);
    await openStore(t, url).then((s) => s.close());
    const known = loadMigrations().length;
    await query(url, `INSERT INTO postern_schema (version, name) VALUES ($1, 'from_the_future')`, [
      known + 5,
    ]);
    const store = new PostgresStore({ url });
    await assert.rejects(store.open(), (err: unknown) => {
      assert.ok(err instanceof PosternError);
      assert.equal(err.code, 'ERR_CONFIG');
      assert.match(err.message, new RegExp(`version ${known + 5}.*version ${known}`));
      return true;
    });
  });

  test('the printed SQL builds the schema that a store then opens without migrating', async (t) => {
    const url = await freshDb(t);
    const sql = migrationSql();
    assert.match(sql, /CREATE TABLE postern_events/);
    await query(url, sql);
    const logged: string[] = [];
    const logging = new PostgresStore({
      url,
      logger: { info: (_f, m) => logged.push(m), warn: (_f, m) => logged.push(m) },
    });
    await logging.open();
    t.after(() => logging.close());
    assert.ok(!logged.includes('database schema migrated'), logged.join(', '));
    assert.equal((await logging.appendEvent(payload(2))).status, 'queued');
  });
});

describe('retention', () => {
  test('drops whole days of finished events, deletes rows only where a day is partly kept', async (t) => {
    const url = await freshDb(t);
    const store = await openStore(t, url);
    const at = (day: number, i: number) =>
      payload(day * 1_000 + i, { receivedAt: D0 + day * DAY + i });
    // Day 0: all finished. Day 1: finished and one still queued. Day 2: straddles the cutoff.
    const finished = [at(0, 1), at(0, 2), at(1, 1), at(2, 1), at(2, 5)];
    const queued = [at(1, 2), at(2, 9)];
    for (const p of [...finished, ...queued]) await store.appendEvent(p);
    for (const p of finished) {
      await store.updateEvent(p.id, { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 });
    }
    const partitions = async () =>
      (
        await query<{ name: string }>(
          url,
          `SELECT tablename AS name FROM pg_tables WHERE tablename ~ '^postern_events_2024' ORDER BY 1`,
        )
      ).map((r) => r.name);
    assert.deepEqual(await partitions(), [
      'postern_events_20240110',
      'postern_events_20240111',
      'postern_events_20240112',
    ]);

    const removed = await store.removeFinishedBefore(D0 + 2 * DAY + 3);
    assert.equal(removed, 4, 'day 0 (2), day 1 (1), day 2 before the cutoff (1)');
    assert.deepEqual(
      await partitions(),
      ['postern_events_20240111', 'postern_events_20240112'],
      'day 0 dropped whole; day 1 holds a queued event',
    );
    for (const p of [at(0, 1), at(0, 2), at(1, 1), at(2, 1)]) {
      assert.equal(await store.getEvent(p.id), undefined, p.id);
      await assert.rejects(store.readPayload(p.id), { code: 'ERR_NOT_FOUND' });
    }
    assert.equal((await store.getEvent(at(2, 5).id))?.status, 'delivered', 'after the cutoff');
    for (const p of queued) assert.equal((await store.getEvent(p.id))?.status, 'queued');
    assert.deepEqual(await store.countByStatus(), {
      queued: 2,
      delivering: 0,
      delivered: 1,
      failed: 0,
      rejected: 0,
      filtered: 0,
    });

    // Events of a dropped day can arrive again (a clock set back): the day is made again.
    assert.equal((await store.appendEvent(at(0, 7))).status, 'queued');
    assert.equal((await store.countByStatus()).queued, 3);
  });
});

describe('group commit', () => {
  test('concurrent appends share statements, and every one is durable', async (t) => {
    const url = await freshDb(t);
    const store = await openStore(t, url);
    const n = 300;
    const all = await Promise.all(
      Array.from({ length: n }, (_, i) => store.appendEvent(payload(i + 1))),
    );
    assert.equal(all.length, n);
    const { appendStatements, appendedEvents } = store.stats;
    assert.equal(appendedEvents, n);
    assert.ok(appendStatements <= 6, `${appendStatements} statements for ${n} appends`);
    const rows = await query<{ n: string }>(url, 'SELECT count(*) AS n FROM postern_events');
    assert.equal(Number(rows[0]?.n), n);
    assert.equal((await store.countByStatus()).queued, n);
  });
});

describe('several store instances on one database', () => {
  let url = '';
  before(async () => {
    url = await createDatabase(`${base}_shared`);
  });
  after(() => dropDatabase(`${base}_shared`));

  test('claims are exclusive across instances', async (t) => {
    const a = await openStore(t, url);
    const b = await openStore(t, url);
    const n = 200;
    await Promise.all(
      Array.from({ length: n }, (_, i) => a.appendEvent(payload(i + 1, { channelId: 'ch_x' }))),
    );
    const got = new Map<string, string>();
    let doubles = 0;
    const drain = async (store: PostgresStore, owner: string) => {
      for (let round = 0; round < n; round++) {
        const { claims } = await store.claim({
          owner,
          channelId: 'ch_x',
          ordered: false,
          limit: 7,
          now: D0 + DAY,
          leaseMs: 600_000,
        });
        if (claims.length === 0) return;
        for (const c of claims) {
          if (got.has(c.event.id)) doubles++;
          got.set(c.event.id, owner);
        }
      }
    };
    await Promise.all([drain(a, 'A'), drain(b, 'B'), drain(a, 'A2'), drain(b, 'B2')]);
    assert.equal(doubles, 0);
    assert.equal(got.size, n, `${n} claimed, each once`);
    assert.equal((await a.countByStatus()).delivering, n);
  });

  test('an ordered key is held by one instance at a time', async (t) => {
    const a = await openStore(t, url);
    const b = await openStore(t, url);
    const keys = ['k1', 'k2', 'k3'];
    const n = 60;
    for (let i = 0; i < n; i++) {
      await a.appendEvent(
        payload(10_000 + i, { channelId: 'ch_o', orderKey: keys[i % keys.length]! }),
      );
    }
    const held = new Map<string, string>();
    const order = new Map<string, string[]>();
    let overlaps = 0;
    const work = async (store: PostgresStore, owner: string) => {
      for (let round = 0; round < 4 * n; round++) {
        const { claims } = await store.claim({
          owner,
          channelId: 'ch_o',
          ordered: true,
          limit: 10,
          now: D0 + DAY,
          leaseMs: 600_000,
        });
        if (claims.length === 0 && (await store.countByStatus()).queued === 0) return;
        for (const c of claims) {
          const key = c.event.orderKey;
          if (held.has(key)) overlaps++;
          held.set(key, c.event.id);
          order.set(key, [...(order.get(key) ?? []), c.event.id]);
        }
        await new Promise((r) => setImmediate(r));
        for (const c of claims) {
          held.delete(c.event.orderKey);
          const done = await store.settle(
            { id: c.event.id, epoch: c.epoch },
            { status: 'delivered', attemptCount: 1, nextAttemptAt: 0 },
          );
          assert.ok(done);
        }
      }
    };
    await Promise.all([work(a, 'A'), work(b, 'B')]);
    assert.equal(overlaps, 0, 'never two claims of one key at once');
    for (const key of keys) {
      const ids = order.get(key) ?? [];
      assert.equal(ids.length, n / keys.length, key);
      assert.deepEqual(ids, [...ids].sort(), `${key} in arrival order`);
    }
  });

  test('the change feed reaches the other instance', async (t) => {
    const a = await openStore(t, url);
    const b = await openStore(t, url);
    const seen = record(b);
    const appended = await a.appendEvent(payload(20_000, { channelId: 'ch_feed' }));
    await waitFor(
      seen,
      (s) =>
        s.some((c) => c.type === 'event' && c.event.id === appended.id) &&
        s.some((c) => c.type === 'work' && c.channelId === 'ch_feed'),
      'the append on the other instance',
    );
    const event = seen.find(
      (c): c is { type: 'event'; event: EventSummary } =>
        c.type === 'event' && c.event.id === appended.id,
    );
    assert.deepEqual(event?.event, appended);
    await a.updateControl((s) => {
      s.adminTokenHash = 'feed-test';
    });
    await waitFor(seen, (s) => s.some((c) => c.type === 'control'), 'the control change');
    assert.equal((await b.readControl()).adminTokenHash, 'feed-test');
    const own = seen.filter((c) => c.type === 'event' && c.event.id === appended.id).length;
    assert.equal(own, 1, 'each change once');
  });

  test('the other instance reads changed events only for a listener that wants them', async (t) => {
    const a = await openStore(t, url);
    const b = await openStore(t, url);
    const workOnly: StoreChange[] = [];
    b.subscribe((c) => workOnly.push(c), { events: false });
    const first = await a.appendEvent(payload(25_000, { channelId: 'ch_watch' }));
    await waitFor(
      workOnly,
      (s) => s.some((c) => c.type === 'work' && c.channelId === 'ch_watch'),
      'work on the other instance',
    );
    const seen = record(b);
    const second = await a.appendEvent(payload(25_001, { channelId: 'ch_watch' }));
    await waitFor(
      seen,
      (s) => s.some((c) => c.type === 'event' && c.event.id === second.id),
      'the second event, read for the listener that wants events',
    );
    assert.ok(!seen.some((c) => c.type === 'event' && c.event.id === first.id));
    assert.deepEqual(
      workOnly.filter((c) => c.type === 'event'),
      [],
      'no event changes for a listener that wants none',
    );
  });

  test('after its connection is killed the feed reconnects and reports every channel', async (t) => {
    const a = await openStore(t, url);
    const b = await openStore(t, url, { feedBackoff: () => 20 });
    await a.updateControl((s) => {
      s.channels = ['ch_r1', 'ch_r2'].map((id) => ({
        id,
        name: id,
        verify: null,
        response: { mode: 'async', timeoutMs: 10_000 },
        retry: { delaysMs: [] },
        ordered: false,
        orderingKey: null,
        rateLimit: null,
        maxBodyBytes: 1 << 20,
        methods: null,
        paths: null,
        createdAt: D0,
      }));
    });
    const seen = record(b);
    const killed = await query<{ n: string }>(
      url,
      `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'postern-feed'`,
    );
    assert.ok(Number(killed[0]?.n) >= 2, 'both feeds were connected');
    await waitFor(
      seen,
      (s) =>
        s.some((c) => c.type === 'control') &&
        ['ch_r1', 'ch_r2'].every((id) => s.some((c) => c.type === 'work' && c.channelId === id)),
      'work on every channel and a control change after the reconnect',
    );
    seen.length = 0;
    const appended = await a.appendEvent(payload(30_000, { channelId: 'ch_r1' }));
    await waitFor(
      seen,
      (s) => s.some((c) => c.type === 'event' && c.event.id === appended.id),
      'a change through the new connection',
    );
    assert.ok(b.feedConnected);
  });
});

test('pool connections commit synchronously even where the database defaults to off', async (t) => {
  const url = await freshDb(t);
  await query(
    url,
    `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$`,
  );
  assert.deepEqual(await query(url, 'SHOW synchronous_commit'), [{ synchronous_commit: 'off' }]);
  const pool = createPool({ url, max: 2 });
  t.after(() => pool.end());
  const clients = await Promise.all([pool.connect(), pool.connect()]);
  for (const client of clients) {
    assert.deepEqual((await client.query('SHOW synchronous_commit')).rows, [
      { synchronous_commit: 'on' },
    ]);
    client.release();
  }
});
