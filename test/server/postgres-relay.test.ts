/**
 * The relay on PostgreSQL, as a user runs it (real processes): the password never printed,
 * channel secrets sealed in the database, `migrate`, a newer schema refused, and a database
 * unreachable at start or later (readiness, 503 with Retry-After, recovery without a restart).
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { loadMigrations } from '../../server/store/postgres/migrate.ts';
import {
  eventually,
  Proc,
  removeDir,
  ROOT,
  spawnRelay,
  startRelay,
  tempDir,
  type RelayHandle,
} from '../helpers/processes.ts';
import {
  createDatabase,
  dropDatabase,
  randomDatabaseName,
  TEST_DATABASE_URL,
} from '../helpers/postgres.ts';

const base = randomDatabaseName('postern_relay');
let next = 0;
const dirs: string[] = [];

after(async () => {
  for (const dir of dirs) await removeDir(dir);
});

async function freshDb(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const name = `${base}_${++next}`;
  const url = await createDatabase(name);
  t.after(() => dropDatabase(name));
  return url;
}

async function dataDir(): Promise<string> {
  const dir = await tempDir('postern-pgrelay-');
  dirs.push(dir);
  return dir;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Runs `server/main.ts` with `args` to its end; returns its exit code and every line. */
async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<[number | null, string]> {
  const proc = new Proc([path.join(ROOT, 'server/main.ts'), ...args], env);
  const code = await proc.exited;
  // The last lines may still be in the pipes when the exit is reported.
  await new Promise((r) => setImmediate(r));
  return [code, proc.raw.join('\n')];
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** A TCP proxy on `port` to the test database server: closing it takes the database away. */
class DbProxy {
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;
  constructor(readonly port: number) {}

  async open(): Promise<void> {
    const target = new URL(TEST_DATABASE_URL);
    const server = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
  }

  /** Stops listening and cuts every connection through it. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise((r) => server.close(r));
  }
}

/** `url` with its host and port replaced by 127.0.0.1:`port` (the same database name). */
function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

async function get(url: string): Promise<{ status: number; body: string; retryAfter: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return {
    status: res.status,
    body: await res.text(),
    retryAfter: res.headers.get('retry-after') ?? '',
  };
}

async function post(url: string, body: string) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') };
}

function stopAfter(t: { after(fn: () => Promise<void>): void }, relay: { stop(): Promise<void> }) {
  t.after(() => relay.stop());
}

// ---- the password is never printed -----------------------------------------------------------

/**
 * A server that speaks just enough of the PostgreSQL protocol to ask for the password in
 * clear and refuse it, quoting it back (as a careless server or proxy might): whatever the
 * relay prints of that error must still not carry it.
 */
async function refusingServer(t: { after(fn: () => Promise<void>): void }): Promise<number> {
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let started = false;
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!started) {
        if (buffered.length < 4 || buffered.length < buffered.readInt32BE(0)) return;
        buffered = buffered.subarray(buffered.readInt32BE(0));
        started = true;
        const ask = Buffer.alloc(9);
        ask.write('R', 0);
        ask.writeInt32BE(8, 1);
        ask.writeInt32BE(3, 5); // AuthenticationCleartextPassword
        socket.write(ask);
      }
      if (buffered.length < 5 || buffered.length < 1 + buffered.readInt32BE(1)) return;
      const password = buffered.subarray(5, buffered.readInt32BE(1)).toString().replace(/\0$/, '');
      const fields = Buffer.from(
        `SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "postern" (sent "${password}")\0\0`,
      );
      const err = Buffer.alloc(5);
      err.write('E', 0);
      err.writeInt32BE(4 + fields.length, 1);
      socket.end(Buffer.concat([err, fields]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

test('the database password appears in no output: serve, migrate, --help, a refused login', async (t) => {
  const port = await refusingServer(t);
  const password = `pw-${randomBytes(9).toString('hex')}`;
  const url = `postgres://postern:${password}@127.0.0.1:${port}/postern`;
  const dir = await dataDir();

  const relay = await spawnRelay(dir, { databaseUrl: url });
  const code = await relay.exited;
  await new Promise((r) => setImmediate(r));
  const serveOut = relay.raw.join('\n');
  assert.equal(code, 1, serveOut);
  assert.match(serveOut, /password authentication failed/);
  assert.match(serveOut, /postgres:\/\/postern:\*\*\*@127\.0\.0\.1/); // the redacted URL, at start
  assert.ok(!serveOut.includes(password), serveOut);

  const [envCode, envOut] = await run(['serve', '--port', '0', '--data-dir', dir], {
    POSTERN_DATABASE_URL: url,
  });
  assert.equal(envCode, 1);
  assert.match(envOut, /password authentication failed/);
  assert.ok(!envOut.includes(password), envOut);

  const [migrateCode, migrateOut] = await run(['migrate', '--database-url', url]);
  assert.equal(migrateCode, 1);
  assert.match(migrateOut, /password authentication failed/);
  assert.ok(!migrateOut.includes(password), migrateOut);

  const [helpCode, help] = await run(['--help'], { POSTERN_DATABASE_URL: url });
  assert.equal(helpCode, 0);
  assert.match(help, /--database-url URL/);
  assert.match(help, /--database-pool-size N/);
  assert.doesNotMatch(help, /postgres:\/\/[^/@\s]*:[^@\s]*@/); // no example with a password
  assert.ok(!help.includes(password));
});

// ---- channel secrets at rest -----------------------------------------------------------------

test('channel secrets are sealed in postern_control, opened on read, and a wrong key is refused', async (t) => {
  const url = await freshDb(t);
  const dir = await dataDir();
  const secret = `gh-${randomBytes(12).toString('hex')}`;
  let relay: RelayHandle = await startRelay({ dataDir: dir, extraArgs: ['--database-url', url] });
  const channel = await relay.api('POST', '/api/channels', {
    name: 'sealed',
    verify: { provider: 'github', secret },
  });
  await relay.stop();

  const [row] = await query<{ doc: unknown }>(url, 'SELECT doc FROM postern_control WHERE id = 1');
  const stored = JSON.stringify(row?.doc);
  assert.ok(stored.includes(channel.id), 'the channel is in the control row');
  assert.ok(!stored.includes(secret), 'the secret is not in clear');
  assert.match(stored, /"secret":"enc:v1:/);

  // Started again with its key (the data dir's): the secret opens, a signed webhook is taken.
  relay = await startRelay({ dataDir: dir, extraArgs: ['--database-url', url] });
  stopAfter(t, relay);
  const body = '{"zen":"sealed"}';
  const signed = await fetch(`${relay.url}/h/${channel.id}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'ping',
      'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
    },
    body,
  });
  assert.equal(signed.status, 202, await signed.text());
  const forged = await fetch(`${relay.url}/h/${channel.id}`, {
    method: 'POST',
    headers: { 'x-github-event': 'ping', 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` },
    body,
  });
  assert.equal(forged.status, 401);
  await relay.stop();

  // Another key: refused at start, as the embedded store refuses it.
  const [wrongCode, wrongOut] = await run(
    ['serve', '--port', '0', '--data-dir', await dataDir(), '--database-url', url],
    { POSTERN_SECRETS_KEY: randomBytes(32).toString('base64') },
  );
  assert.equal(wrongCode, 1, wrongOut);
  assert.match(wrongOut, /do not open with the key from POSTERN_SECRETS_KEY/);
  // A data dir without the key file: not a reason to make a new key that opens nothing.
  const empty = await dataDir();
  const [missingCode, missingOut] = await run([
    'serve',
    '--port',
    '0',
    '--data-dir',
    empty,
    '--database-url',
    url,
  ]);
  assert.equal(missingCode, 1, missingOut);
  assert.match(missingOut, /holds encrypted channel secrets but .*secrets\.key is missing/);
  assert.ok(!missingOut.includes(secret) && !wrongOut.includes(secret));
});

test('secrets written in clear by an earlier version are sealed at start', async (t) => {
  const url = await freshDb(t);
  const dir = await dataDir();
  const relay = await startRelay({ dataDir: dir, extraArgs: ['--database-url', url] });
  const channel = await relay.api('POST', '/api/channels', { name: 'clear' });
  await relay.stop();
  const secret = `old-${randomBytes(12).toString('hex')}`;
  await query(
    url,
    `UPDATE postern_control SET doc = jsonb_set(doc, '{channels,0,verify}',
       '{"provider":"github","secret":"${secret}"}'::jsonb) WHERE id = 1`,
  );
  const again = await startRelay({ dataDir: dir, extraArgs: ['--database-url', url] });
  stopAfter(t, again);
  await again.proc.waitForMsg('encrypting 1 channel secrets found in clear in the database');
  const [row] = await query<{ doc: unknown }>(url, 'SELECT doc FROM postern_control WHERE id = 1');
  assert.ok(!JSON.stringify(row?.doc).includes(secret));
  const body = '{}';
  const res = await fetch(`${again.url}/h/${channel.id}`, {
    method: 'POST',
    headers: {
      'x-github-event': 'ping',
      'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
    },
    body,
  });
  assert.equal(res.status, 202);
});

// ---- migrate ---------------------------------------------------------------------------------

test('migrate applies the schema once and says what it applied; --print connects to nothing', async (t) => {
  const url = await freshDb(t);
  const [printCode, sql] = await run([
    'migrate',
    '--print',
    '--database-url',
    `postgres://postgres@127.0.0.1:${await closedPort()}/x`,
  ]);
  assert.equal(printCode, 0, sql);
  const known = loadMigrations();
  const latest = known.length;
  const names = known.map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);
  assert.ok(latest >= 3, 'at least the three migrations of this release');
  assert.ok(sql.includes(`-- Postern schema, version ${latest}\n`), sql.slice(0, 200));
  assert.match(sql, /CREATE TABLE IF NOT EXISTS postern_schema/);
  for (const name of names) assert.ok(sql.includes(`\n-- ${name}\n`), `${name} is printed`);

  const [code, out] = await run(['migrate', '--database-url', url]);
  assert.equal(code, 0, out);
  assert.ok(out.includes(`schema version 0 -> ${latest}; applied ${names.join(', ')}`), out);
  const versions = await query<{ version: number }>(url, 'SELECT version FROM postern_schema');
  assert.deepEqual(
    versions.map((v) => v.version).sort((a, b) => a - b),
    known.map((m) => m.version),
  );
  const [againCode, again] = await run(['migrate'], { POSTERN_DATABASE_URL: url });
  assert.equal(againCode, 0, again);
  assert.ok(again.includes(`schema at version ${latest}, nothing to apply`), again);

  const [noUrlCode, noUrl] = await run(['migrate'], { POSTERN_DATABASE_URL: '' });
  assert.equal(noUrlCode, 1);
  assert.match(noUrl, /--database-url or POSTERN_DATABASE_URL/);
});

test('a relay against a newer schema refuses to start, naming both versions', async (t) => {
  const url = await freshDb(t);
  const [code] = await run(['migrate', '--database-url', url]);
  assert.equal(code, 0);
  const latest = loadMigrations().length;
  const future = latest + 1;
  await query(
    url,
    `INSERT INTO postern_schema (version, name) VALUES (${future}, 'from_the_future')`,
  );
  const relay = await spawnRelay(await dataDir(), { databaseUrl: url });
  assert.equal(await relay.exited, 1);
  await new Promise((r) => setImmediate(r));
  const out = relay.raw.join('\n');
  const refusal = `version ${future}, newer than this relay knows (version ${latest})`;
  assert.ok(out.includes(`the database schema is ${refusal}`), out);
  const [migrateCode, migrateOut] = await run(['migrate', '--database-url', url]);
  assert.equal(migrateCode, 1);
  assert.ok(migrateOut.includes(refusal), migrateOut);
});

// ---- the database away -----------------------------------------------------------------------

test('unreachable at start: alive, not ready, 503 with Retry-After; it opens by itself once the database answers', async (t) => {
  const url = await freshDb(t);
  const port = await closedPort();
  const proxy = new DbProxy(port);
  t.after(() => proxy.close());
  const dir = await dataDir();
  const proc = await spawnRelay(dir, { databaseUrl: viaPort(url, port) });
  t.after(async () => void (await proc.kill()));
  const listening = await proc.waitForMsg('listening; opening the store');
  const relayUrl = String(listening['url']);
  // Two attempts failed and were logged: it keeps trying.
  await proc.waitFor(
    (l) => l.msg === 'store unavailable; trying again' && l['attempt'] === 2,
    30_000,
  );

  assert.deepEqual(await get(`${relayUrl}/healthz`), {
    status: 200,
    body: '{"status":"ok"}',
    retryAfter: '',
  });
  assert.deepEqual(await get(`${relayUrl}/readyz`), {
    status: 503,
    body: '{"status":"not ready","store":"unavailable"}',
    retryAfter: '',
  });
  const early = await post(`${relayUrl}/h/ch_unknown`, '{"early":true}');
  assert.equal(early.status, 503);
  assert.equal(early.retryAfter, '5');
  assert.match(early.body, /ERR_UNAVAILABLE/);

  await proxy.open();
  await proc.waitForMsg('relay listening', 30_000);
  assert.equal((await get(`${relayUrl}/readyz`)).status, 200);
  assert.equal(proc.child.exitCode, null, 'the same process: no restart');
  const attempts = proc.lines.filter((l) => l.msg === 'store unavailable; trying again');
  assert.ok(attempts.length >= 2);
  for (const line of attempts) {
    assert.match(String(line['store']), /^postgres:\/\/postgres@127\.0\.0\.1:\d+\//);
  }
});

test('the database away after start: /readyz says so, ingress answers 503 and never 202 for an event not committed; back by itself', async (t) => {
  const url = await freshDb(t);
  const proxy = new DbProxy(await closedPort());
  t.after(() => proxy.close());
  await proxy.open();
  const relay = await startRelay({
    dataDir: await dataDir(),
    extraArgs: ['--database-url', viaPort(url, proxy.port)],
  });
  stopAfter(t, relay);
  const channel = await relay.api('POST', '/api/channels', { name: 'away' });
  const ingress = `${relay.url}/h/${channel.id}`;
  const accepted: string[] = [];
  let refused = 0;
  const send = async (n: number) => {
    const res = await post(ingress, JSON.stringify({ n }));
    if (res.status === 202) accepted.push((JSON.parse(res.body) as { id: string }).id);
    else {
      assert.equal(res.status, 503, res.body);
      assert.equal(res.retryAfter, '5');
      refused++;
    }
    return res.status;
  };
  let n = 0;
  for (; n < 20; n++) assert.equal(await send(n), 202);
  assert.equal((await get(`${relay.url}/readyz`)).status, 200);

  await proxy.close();
  const away = await eventually(
    async () => {
      const r = await get(`${relay.url}/readyz`);
      return r.status === 503 ? r : undefined;
    },
    20_000,
    '/readyz to report the store unavailable',
  );
  assert.equal(away.body, '{"status":"not ready","store":"unavailable"}');
  assert.equal((await get(`${relay.url}/healthz`)).status, 200);
  // Every attempt while it is away is refused with 503 (at most a few, bounded in count).
  for (let i = 0; i < 5; i++, n++) assert.equal(await send(n), 503);

  await proxy.open();
  await eventually(
    async () => ((await get(`${relay.url}/readyz`)).status === 200 ? true : undefined),
    30_000,
    '/readyz to be ready again',
  );
  await eventually(async () => ((await send(n++)) === 202 ? true : undefined), 30_000, 'a 202');
  for (let i = 0; i < 10; i++, n++) assert.equal(await send(n), 202);
  assert.equal(relay.proc.child.exitCode, null, 'the same process: no restart');

  // Every 202 is a committed event; every 503 left nothing behind.
  const rows = await query<{ id: string }>(url, 'SELECT id FROM postern_events ORDER BY id');
  assert.deepEqual(
    rows.map((r) => r.id),
    [...accepted].sort(),
  );
  assert.equal(accepted.length + refused, n);
  assert.ok(refused >= 5);
});

test('a relay waiting for its database stops on SIGTERM', async (t) => {
  const port = await closedPort();
  const proc = await spawnRelay(await dataDir(), {
    databaseUrl: `postgres://postgres@127.0.0.1:${port}/none`,
  });
  t.after(async () => void (await proc.kill('SIGKILL')));
  await proc.waitForMsg('store unavailable; trying again');
  assert.equal(await proc.kill('SIGTERM'), 0);
});
