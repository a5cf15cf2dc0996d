/**
 * PostgreSQL faults under a burst of webhooks, one relay on its own database: (a) the server
 * restarts (a TCP proxy between the relay and PostgreSQL resets every connection and refuses new
 * ones, then lets them through: the other tests sharing the server are not disturbed), (b) the
 * relay's connections are killed with pg_terminate_backend (once, then kept out for a while),
 * (c) the database is unreachable when the relay starts and reachable later. In each: every
 * answer is 202 or 503 with Retry-After, every 202's id is in the database at the end, /readyz
 * goes 503 then 200, the same relay process recovers by itself, and every acknowledged webhook
 * reaches the app.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import pg from 'pg';
import { startApp, type TestApp } from '../helpers/app.ts';
import { TEST_DATABASE_URL } from '../helpers/postgres.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { databaseFor, test } from '../helpers/store.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  describeAccounting,
  eventIdOf,
  TcpProxy,
  waitAllDelivered,
  type Sent,
} from './helpers.ts';

const TOKEN = 'database-fault-admin-token-0001';
/** Webhooks per second during a burst, and how many at most (the burst stops once done). */
const RATE = 150;
const MAX_SENT = 4_000;
/** 202s wanted before the first fault, and after each recovery. */
const ACKED_BEFORE = 100;
const ACKED_AFTER = 100;
/** Longest wait for an outage to show (readyz 503 and a 503 at ingress) or to end. */
const PHASE_TIMEOUT_MS = 30_000;
const OPTS = { postgresOnly: 'faults of the database server', timeout: 180_000 };
const UNAVAILABLE = { status: 'not ready', store: 'unavailable' };

const cleanups: (() => Promise<unknown>)[] = [];
const http = burstDispatcher(16);

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await http.close();
});

// ---------------------------------------------------------------------------------------------
// Pieces

/** Runs `sql` on the test server's own database (not the relay's), as its superuser. */
async function adminQuery<T extends pg.QueryResultRow>(sql: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return await client.query<T>(sql, values);
  } finally {
    await client.end();
  }
}

/** How many of `ids` are events in the database at `url`. */
async function committed(url: string, ids: string[]): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const res = await client.query<{ n: string }>(
      'SELECT count(DISTINCT id) AS n FROM postern_events WHERE id = ANY($1::text[])',
      [ids],
    );
    return Number(res.rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

/** `url` with its host and port replaced by the proxy's. */
function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.host = new URL(proxy.url).host;
  return u.toString();
}

interface Probe {
  at: number;
  status: number;
  body: string;
}

/** Polls GET /readyz every 50 ms and keeps every answer (status 0: no answer). */
class Readiness {
  readonly probes: Probe[] = [];
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(url: string) {
    this.#done = (async () => {
      while (!this.#stopped) {
        const at = Date.now();
        try {
          const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
          this.probes.push({ at, status: res.status, body: await res.text() });
        } catch {
          this.probes.push({ at, status: 0, body: '' });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  since(at: number): Probe[] {
    return this.probes.filter((p) => p.at >= at);
  }

  last(): Probe | undefined {
    return this.probes[this.probes.length - 1];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/** Waits for `check` to hold, polling every 25 ms; fails with `what` and `state()` after the limit. */
async function until(check: () => boolean, what: string, state: () => string): Promise<void> {
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${state()})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface World {
  dataDir: string;
  /** The relay's database, reached directly (for the test's own checks). */
  databaseUrl: string;
  proxy: TcpProxy;
  relay: RelayHandle;
  app: TestApp;
  channelId: string;
  stateDir: string;
  routes: { channel: string; target: string }[];
}

/** A relay on a fresh database through a proxy, a channel, an app, and a paired agent. */
async function setUp(name: string, opts: { startAgent: boolean }): Promise<World> {
  const dataDir = await tempDir();
  cleanups.push(() => removeDir(dataDir));
  const databaseUrl = await databaseFor(dataDir);
  const proxy = await TcpProxy.start(databaseUrl);
  cleanups.push(() => proxy.close());
  const app = await startApp((_req, res) => void setTimeout(() => res.end('ok'), 2));
  cleanups.push(() => app.close());
  const relay = await startRelay({
    dataDir,
    databaseUrl: viaProxy(databaseUrl, proxy),
    env: { POSTERN_ADMIN_TOKEN: TOKEN },
  });
  cleanups.push(() => relay.stop());
  const channel = await relay.api<{ id: string }>('POST', '/api/channels', { name });
  const { stateDir } = await pairAgent(relay, [channel.id], `${name}-agent`);
  cleanups.push(() => removeDir(stateDir));
  const routes = [{ channel: name, target: `${app.url}/hooks` }];
  if (opts.startAgent) await runAgent(stateDir, routes, { waitConnected: true });
  return { dataDir, databaseUrl, proxy, relay, app, channelId: channel.id, stateDir, routes };
}

async function runAgent(
  stateDir: string,
  routes: World['routes'],
  opts: { waitConnected: boolean },
): Promise<AgentHandle> {
  const agent = await startAgent(stateDir, routes, opts);
  cleanups.push(() => agent.stop());
  return agent;
}

interface Fault {
  name: string;
  /** Does it; returns what it did, for the diagnostic line. */
  inject(): Promise<string>;
  /** Ends it (none: the fault is over once injected). */
  restore?(): Promise<void>;
}

interface Outcome {
  sent: Sent[];
  /** Answers 503 with a Retry-After, and without one. */
  unavailable: number;
  unavailableWithoutRetryAfter: number;
  notes: string[];
}

/**
 * A paced burst at the relay, with `faults` one after the other: each after `ackedBefore`
 * (first) or ACKED_AFTER (next) 202s; a fault with `restore` is held until /readyz answers 503 and
 * ingress has answered 503, then ended; after each, the relay must be ready again and take
 * ACKED_AFTER more webhooks. Returns every answer.
 */
async function burstThrough(
  w: World,
  label: string,
  faults: Fault[],
  ackedBefore = ACKED_BEFORE,
): Promise<Outcome> {
  const readiness = new Readiness(w.relay.url);
  const notes: string[] = [];
  let acked = 0;
  let unavailable = 0;
  let stop = false;
  const answers: Sent[] = [];
  const running = burst({
    url: `${w.relay.url}/h/${w.channelId}/db`,
    count: MAX_SENT,
    inFlight: 16,
    ratePerSec: RATE,
    dispatcher: http,
    deadlineMs: 120_000,
    label,
    onAnswer: (s) => {
      answers.push(s);
      if (s.status === 202) acked++;
      if (s.status === 503) unavailable++;
      return stop;
    },
  });
  const state = () =>
    `${answers.length} answered, ${acked} × 202, ${unavailable} × 503, readyz ` +
    `${readiness.last()?.status ?? 'not probed'}`;
  try {
    let wanted = ackedBefore;
    for (const fault of faults) {
      await until(() => acked >= wanted, `${wanted} webhooks acknowledged`, state);
      const ackedAt = acked;
      const unavailableAt = unavailable;
      const at = Date.now();
      notes.push(`${fault.name}: ${await fault.inject()} after ${ackedAt} × 202`);
      if (fault.restore) {
        await until(
          () => readiness.since(at).some((p) => p.status === 503) && unavailable > unavailableAt,
          'readyz 503 and a 503 at ingress',
          state,
        );
        await fault.restore();
        notes.push(
          `${fault.name}: held ${Date.now() - at} ms, ${unavailable - unavailableAt} × 503 ` +
            `meanwhile`,
        );
      }
      const healed = Date.now();
      wanted = acked + ACKED_AFTER;
      await until(
        () => readiness.since(healed).some((p) => p.status === 200) && acked >= wanted,
        `readyz 200 and ${ACKED_AFTER} more 202s`,
        state,
      );
      notes.push(`${fault.name}: ready again ${Date.now() - healed} ms after`);
    }
  } finally {
    stop = true;
    await running;
    await readiness.stop();
  }
  const sent = answers.sort((a, b) => a.seq - b.seq);
  // The readiness answers while the store was away: 503 with the documented body, never
  // anything else; at the end, 200.
  const notReady = readiness.probes.filter((p) => p.status !== 200);
  assert.deepEqual(
    notReady.filter((p) => p.status !== 503).map((p) => `${p.status} ${p.body}`),
    [],
    'readyz answered 200 or 503 only',
  );
  for (const p of notReady) assert.deepEqual(JSON.parse(p.body), UNAVAILABLE);
  assert.equal(readiness.last()?.status, 200, 'readyz answers 200 at the end');
  return {
    sent,
    unavailable: sent.filter((s) => s.status === 503 && s.retryAfter !== null).length,
    unavailableWithoutRetryAfter: sent.filter((s) => s.status === 503 && s.retryAfter === null)
      .length,
    notes,
  };
}

/**
 * The checks every fault ends with: answers 202 or 503 (with Retry-After) only, every 202 in
 * the database, every one delivered; one diagnostic line with the counts.
 */
async function settle(
  w: World,
  label: string,
  outcome: Outcome,
  earlier: Map<string, Buffer> = new Map(),
): Promise<void> {
  const { sent } = outcome;
  assert.deepEqual(
    sent
      .filter((s) => s.status !== 202 && s.status !== 503)
      .map((s) => `seq ${s.seq}: ${s.status ?? s.error}`),
    [],
    'every webhook was answered 202 or 503',
  );
  assert.equal(outcome.unavailableWithoutRetryAfter, 0, 'every 503 carries Retry-After');
  for (const s of sent.filter((x) => x.status === 503)) {
    assert.match(s.retryAfter ?? '', /^[1-9][0-9]*$/, `seq ${s.seq}: Retry-After in seconds`);
  }
  const acked = new Map([...earlier, ...acknowledged(sent)]);
  const ids = [...acked.keys()];
  const inDatabase = await committed(w.databaseUrl, ids);
  assert.equal(inDatabase, ids.length, `${ids.length} acknowledged, ${inDatabase} in the database`);

  console.log(
    `${label}: ${sent.length + earlier.size} sent, ${ids.length} acknowledged (202), ` +
      `${inDatabase} of them in the database, ${outcome.unavailable} answered 503 with Retry-After`,
  );
  try {
    await waitAllDelivered(w.relay, w.channelId, ids, 90_000);
  } catch (err) {
    const problems = w.relay.proc.lines.filter((l) => (l.level ?? 0) >= 40).slice(-15);
    console.log(
      `${label}: the relay's last warnings:\n${problems.map((l) => JSON.stringify(l)).join('\n')}`,
    );
    throw err;
  }
  const acc = account(acked, w.app.received);
  // A webhook answered 503 may still have been committed (the answer, not the COMMIT, was
  // lost): at least once, so it may be delivered; it must be one of the webhooks sent.
  const answered503 = new Set(
    sent.filter((s) => s.status !== 202).map((s) => s.body.toString('base64')),
  );
  const foreign = w.app.received.filter((r) => !acked.has(eventIdOf(r)));
  for (const r of foreign) {
    assert.ok(answered503.has(r.body.toString('base64')), 'a delivery without a 202 was sent');
  }
  for (const note of outcome.notes) console.log(`${label}: ${note}`);
  console.log(
    `${describeAccounting(label, sent.length + earlier.size, acc)}; ` +
      `${outcome.unavailable} answered 503 with Retry-After; ${inDatabase} of ${ids.length} ` +
      `acknowledged in the database; ${new Set(foreign.map(eventIdOf)).size} answered 503 ` +
      `but committed and delivered`,
  );
  assert.ok(outcome.unavailable > 0, 'clients were told 503 while the database was away');
  assert.deepEqual(acc.lost, [], `${acc.lost.length} acknowledged webhooks lost`);
  assert.equal(acc.delivered, acked.size, `${acked.size} acknowledged, ${acc.delivered} delivered`);
  assert.deepEqual(acc.wrongBody, [], 'every request carries the body sent under its id');
  assert.equal(acc.reIdentified, 0, 'no webhook arrived under two event ids');
  assert.equal(w.relay.proc.child.exitCode, null, 'the same relay process served throughout');
  assert.equal(w.relay.proc.child.signalCode, null, 'the same relay process served throughout');
}

// ---------------------------------------------------------------------------------------------
// The faults

test(
  '(a) PostgreSQL restarted during a burst: 503 while away, every 202 kept and delivered',
  OPTS,
  async () => {
    const w = await setUp('db-restart', { startAgent: true });
    const outcome = await burstThrough(w, 'db restart', [
      {
        name: 'server down',
        inject: async () => `${w.proxy.refuse()} connections reset, new ones refused`,
        restore: async () => w.proxy.heal(),
      },
      {
        name: 'server down again',
        inject: async () => `${w.proxy.refuse()} connections reset, new ones refused`,
        restore: async () => w.proxy.heal(),
      },
    ]);
    await settle(w, 'database (a) restart', outcome);
  },
);

test(
  "(b) the relay's connections killed with pg_terminate_backend during a burst",
  OPTS,
  async () => {
    const w = await setUp('db-terminate', { startAgent: true });
    const name = new URL(w.databaseUrl).pathname.slice(1);
    const terminate = async () => {
      const res = await adminQuery<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [name],
      );
      const n = res.rows.filter((r) => r.killed).length;
      assert.ok(n > 0, 'the relay had connections to kill');
      return n;
    };
    const allow = (yes: boolean) =>
      adminQuery(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS ${yes ? 'true' : 'false'}`);
    cleanups.push(() => allow(true));
    const outcome = await burstThrough(w, 'db terminate', [
      // Killed once: the relay reconnects at once.
      { name: 'killed', inject: async () => `${await terminate()} connections terminated` },
      // Killed and kept out (the database refuses connections) until the relay says so.
      {
        name: 'killed and kept out',
        inject: async () => {
          await allow(false);
          return `${await terminate()} connections terminated, new ones refused`;
        },
        restore: () => allow(true).then(() => undefined),
      },
    ]);
    await settle(w, 'database (b) terminate', outcome);
  },
);

test('(c) the database unreachable when the relay starts, reachable later', OPTS, async () => {
  const w = await setUp('db-late', { startAgent: false });
  // Queued while the agent is away, on a first relay process; then that relay stops.
  const queued = await burst({
    url: `${w.relay.url}/h/${w.channelId}/before`,
    count: 50,
    inFlight: 8,
    dispatcher: http,
    deadlineMs: 30_000,
    label: 'db late, before',
  });
  assert.deepEqual(
    queued.filter((s) => s.status !== 202).map((s) => `seq ${s.seq}: ${s.status ?? s.error}`),
    [],
    'the first relay took every webhook',
  );
  const port = Number(new URL(w.relay.url).port);
  await w.relay.stop();
  w.proxy.refuse();
  const relay = await startRelay({
    dataDir: w.dataDir,
    port,
    databaseUrl: viaProxy(w.databaseUrl, w.proxy),
    env: { POSTERN_ADMIN_TOKEN: TOKEN },
    listeningMsg: 'listening; opening the store',
  });
  cleanups.push(() => relay.stop());
  const late: World = { ...w, relay };
  await runAgent(w.stateDir, w.routes, { waitConnected: false });
  const refusedBefore = w.proxy.refused;
  const outcome = await burstThrough(
    late,
    'db late',
    [
      {
        name: 'unreachable at start',
        inject: async () => `relay started with the database unreachable`,
        restore: async () => {
          assert.ok(w.proxy.refused > refusedBefore, 'the relay tried the database meanwhile');
          w.proxy.heal();
        },
      },
    ],
    0,
  );
  await settle(late, 'database (c) unreachable at start', outcome, acknowledged(queued));
});
