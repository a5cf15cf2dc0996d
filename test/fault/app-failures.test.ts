/**
 * Internal apps that fail: down for a while, 500s, too slow for the route's timeout, refusing
 * connections, 429 with Retry-After. The relay owns the retry schedule (short schedules set in
 * each channel's config); each case reads the attempts log through GET /api/events/:id.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import {
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  tempDir,
  type AgentHandle,
  type RelayHandle,
  type Route,
} from '../helpers/processes.ts';
import {
  account,
  acknowledged,
  burst,
  burstDispatcher,
  closeAppServer,
  describeAccounting,
  eventIdOf,
  getEvent,
  listenAppOn,
  unusedPort,
  waitForEvent,
  type Attempt,
  type EventView,
} from './helpers.ts';
import { test } from '../helpers/store.ts';

interface Case {
  name: string;
  delaysMs: number[];
  app: TestApp;
  /** Where the route points (the app's URL, or a port with nothing listening). */
  target: string;
  timeoutMs?: number;
  channelId: string;
}

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let agentId = '';
let dataDir: string | undefined;
let stateDir: string | undefined;
const apps: TestApp[] = [];
const cases = new Map<string, Case>();
const http = burstDispatcher(10);

async function addCase(
  name: string,
  delaysMs: number[],
  opts: { refusedPort?: number; timeoutMs?: number } = {},
): Promise<void> {
  const app = await startApp();
  apps.push(app);
  if (opts.refusedPort !== undefined) await closeAppServer(app);
  const target =
    opts.refusedPort === undefined
      ? `${app.url}/hooks`
      : `http://127.0.0.1:${opts.refusedPort}/hooks`;
  cases.set(name, {
    name,
    delaysMs,
    app,
    target,
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    channelId: '',
  });
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

before(async () => {
  await addCase('down', [250, 500, 1000, 2000, 4000, 8000]);
  await addCase('500s', [100, 200, 400, 800]);
  await addCase('slow', [100, 200, 400, 800], { timeoutMs: 300 });
  await addCase('refused', [100, 200, 400, 800], { refusedPort: await unusedPort() });
  await addCase('429', [100, 100, 100]);
  dataDir = await tempDir();
  relay = await startRelay({ dataDir });
  const r = relay;
  for (const c of cases.values()) {
    const created = await r.api<{ id: string; retry: { delaysMs: number[] } }>(
      'POST',
      '/api/channels',
      { name: c.name, retry: { delaysMs: c.delaysMs } },
    );
    assert.deepEqual(created.retry.delaysMs, c.delaysMs, `${c.name}: retry schedule kept`);
    c.channelId = created.id;
  }
  const paired = await pairAgent(
    r,
    [...cases.values()].map((c) => c.channelId),
  );
  stateDir = paired.stateDir;
  agentId = paired.agentId;
  const routes: Route[] = [...cases.values()].map((c) => ({
    channel: c.name,
    target: c.target,
    ...(c.timeoutMs === undefined ? {} : { timeoutMs: c.timeoutMs }),
  }));
  agent = await startAgent(stateDir, routes);
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  for (const app of apps) await app.close();
  await http.close();
  if (dataDir) await removeDir(dataDir);
  if (stateDir) await removeDir(stateDir);
});

/** Sends `count` webhooks to a case's channel; all must be answered 202. */
async function send(c: Case, count: number): Promise<Map<string, Buffer>> {
  const r = need(relay, 'relay');
  const sent = await burst({
    url: `${r.url}/h/${c.channelId}/${c.name}`,
    count,
    inFlight: Math.min(count, 5),
    dispatcher: http,
    deadlineMs: 20_000,
    label: c.name,
  });
  const acked = acknowledged(sent);
  assert.equal(acked.size, count, `${c.name}: ${acked.size} of ${count} answered 202`);
  return acked;
}

function requestsFor(app: TestApp, id: string): Received[] {
  return app.received.filter((req) => eventIdOf(req) === id);
}

function attemptHeaders(reqs: Received[]): string[] {
  return reqs.map((req) => String(req.headers['x-postern-attempt']));
}

function describeAttempts(e: EventView): string {
  return e.attempts
    .map(
      (a) =>
        `${a.outcome}${a.status === null ? '' : ` ${a.status}`}${a.error ? ` (${a.error})` : ''}`,
    )
    .join(', ');
}

function gapMs(a: Attempt, b: Attempt): number {
  return Date.parse(b.at) - Date.parse(a.at);
}

/** Checks the fields every attempt carries. */
function checkAttemptShape(e: EventView): void {
  for (const [i, a] of e.attempts.entries()) {
    assert.equal(a.agentId, agentId, `${e.id} attempt ${i + 1}: made by the paired agent`);
    assert.ok(!Number.isNaN(Date.parse(a.at)), `${e.id} attempt ${i + 1}: at is a date`);
    assert.ok(
      Number.isInteger(a.durationMs) && a.durationMs >= 0,
      `${e.id} attempt ${i + 1}: durationMs ${a.durationMs}`,
    );
    if (i > 0) {
      const prev = e.attempts[i - 1]!;
      assert.ok(gapMs(prev, a) >= 0, `${e.id}: attempts are logged in order`);
    }
  }
}

test('(a) an app that is down for a while gets every event once it is back on its port', async () => {
  const c = need(cases.get('down'), 'case');
  const r = need(relay, 'relay');
  const N = 10;
  const port = Number(new URL(c.app.url).port);
  await closeAppServer(c.app);
  const acked = await send(c, N);
  // Each event fails at least twice while the app is down: it is retried, not dropped.
  for (const id of acked.keys()) {
    await waitForEvent(
      r,
      id,
      (e) => e.attempts.filter((a) => a.outcome === 'failed').length >= 2,
      'two failed attempts while the app is down',
    );
  }
  const whileDown = await Promise.all([...acked.keys()].map((id) => getEvent(r, id)));
  assert.deepEqual(
    whileDown.filter((e) => e.status === 'failed').map((e) => e.id),
    [],
    'no event exhausted its schedule while the app was down',
  );
  assert.equal(c.app.received.length, 0, 'nothing reached the app while it was down');
  await listenAppOn(c.app, port);

  const events: EventView[] = [];
  for (const id of acked.keys()) {
    events.push(await waitForEvent(r, id, (e) => e.status === 'delivered', 'delivered', 30_000));
  }
  const acc = account(acked, c.app.received);
  const attempts = events.map((e) => e.attemptCount);
  const refused = events.flatMap((e) => e.attempts).filter((a) => /refused/i.test(a.error ?? ''));
  console.log(describeAccounting('(a) app down', N, acc));
  console.log(
    `(a) app down: attempts per event ${attempts.join(', ')}; ` +
      `${refused.length} failed attempts say the connection was refused`,
  );
  for (const e of events) {
    checkAttemptShape(e);
    const last = e.attempts.at(-1)!;
    const failed = e.attempts.slice(0, -1);
    assert.ok(e.attemptCount >= 3, `${e.id}: ${e.attemptCount} attempts (≥ 2 failed + 1)`);
    assert.equal(e.attempts.length, e.attemptCount, `${e.id}: every attempt is logged`);
    assert.deepEqual(
      failed.filter((a) => a.outcome !== 'failed' || a.status !== null || !a.error),
      [],
      `${e.id}: the attempts before the app came back failed without a status, with an error`,
    );
    assert.equal(last.outcome, 'delivered', `${e.id}: last attempt delivered`);
    assert.equal(last.status, 200);
    const reqs = requestsFor(c.app, e.id);
    assert.deepEqual(
      attemptHeaders(reqs),
      [String(e.attemptCount)],
      `${e.id}: the app saw only the last attempt`,
    );
  }
  assert.deepEqual(acc.lost, [], `${acc.lost.length} lost`);
  assert.equal(acc.delivered, N);
  assert.equal(acc.duplicates, 0);
  assert.deepEqual(acc.wrongBody, []);
});

test('(b) an app that answers 500 twice then 200: exactly 3 attempts', async () => {
  const c = need(cases.get('500s'), 'case');
  const r = need(relay, 'relay');
  const N = 5;
  const seen = new Map<string, number>();
  c.app.respond = (req, res) => {
    const n = (seen.get(eventIdOf(req)) ?? 0) + 1;
    seen.set(eventIdOf(req), n);
    res.statusCode = n <= 2 ? 500 : 200;
    res.end(n <= 2 ? 'boom' : 'ok');
  };
  const acked = await send(c, N);
  const events: EventView[] = [];
  for (const id of acked.keys()) {
    events.push(await waitForEvent(r, id, (e) => e.status === 'delivered', 'delivered'));
  }
  const acc = account(acked, c.app.received);
  console.log(describeAccounting('(b) 500, 500, 200', N, acc));
  console.log(
    `(b) 500, 500, 200: attempts per event ${events.map((e) => e.attemptCount).join(', ')}`,
  );
  for (const e of events) {
    checkAttemptShape(e);
    assert.equal(e.attemptCount, 3, `${e.id}: ${describeAttempts(e)}`);
    assert.deepEqual(
      e.attempts.map((a) => a.outcome),
      ['failed', 'failed', 'delivered'],
    );
    assert.deepEqual(
      e.attempts.map((a) => a.status),
      [500, 500, 200],
    );
    assert.deepEqual(
      e.attempts.map((a) => a.error === null),
      [false, false, true],
      `${e.id}: failed attempts carry an error, the delivered one none`,
    );
    // The relay waited (at least the jittered schedule, ±20 %) before each retry.
    assert.ok(gapMs(e.attempts[0]!, e.attempts[1]!) >= 0.8 * c.delaysMs[0]!);
    assert.ok(gapMs(e.attempts[1]!, e.attempts[2]!) >= 0.8 * c.delaysMs[1]!);
    const reqs = requestsFor(c.app, e.id);
    assert.deepEqual(attemptHeaders(reqs), ['1', '2', '3'], `${e.id}: x-postern-attempt`);
    for (const req of reqs) assert.deepEqual(req.body, acked.get(e.id));
  }
  assert.deepEqual(acc.lost, []);
  assert.equal(acc.delivered, N);
  assert.equal(acc.duplicates, 2 * N, 'each event reached the app 3 times, same id');
  assert.equal(c.app.received.length, 3 * N);
});

test('(c) an app slower than the route timeoutMs: attempts time out, then the event is failed', async () => {
  const c = need(cases.get('slow'), 'case');
  const r = need(relay, 'relay');
  const timeoutMs = need(c.timeoutMs, 'timeoutMs');
  c.app.respond = (_req, res) => void setTimeout(() => res.end('late'), 2_000);
  const acked = await send(c, 1);
  const [id] = [...acked.keys()];
  const e = await waitForEvent(r, id!, (x) => x.status === 'failed', 'failed', 40_000);
  const reqs = requestsFor(c.app, id!);
  console.log(
    `(c) slow app: ${e.attemptCount} attempts (schedule ${c.delaysMs.length} delays), status ` +
      `${e.status}; ${reqs.length} requests at the app; ${describeAttempts(e)}`,
  );
  checkAttemptShape(e);
  assert.equal(e.attemptCount, c.delaysMs.length + 1);
  assert.equal(e.attempts.length, c.delaysMs.length + 1);
  for (const a of e.attempts) {
    assert.equal(a.outcome, 'failed');
    assert.equal(a.status, null, 'a timed-out attempt has no status');
    assert.match(a.error ?? '', /time(d)? ?out|within \d+ ?ms/i, 'the error names the timeout');
    assert.match(a.error ?? '', new RegExp(`${timeoutMs}`), 'the error names the route timeout');
    assert.ok(a.durationMs >= timeoutMs - 10, `attempt lasted ${a.durationMs} ms ≥ the timeout`);
  }
  assert.equal(e.nextAttemptAt, null, 'a failed event has no next attempt');
  assert.deepEqual(
    attemptHeaders(reqs),
    Array.from({ length: c.delaysMs.length + 1 }, (_, i) => String(i + 1)),
    'the app saw every attempt, numbered',
  );
  // Nothing more comes once the event is failed.
  const settled = c.app.received.length;
  await new Promise((resolve) => setTimeout(resolve, 2 * c.delaysMs.at(-1)!));
  assert.equal(c.app.received.length, settled, 'no attempt after the event is failed');
  assert.equal((await getEvent(r, id!)).status, 'failed');
});

test('(d) an app that refuses connections: failed after the schedule, then a replay delivers it', async () => {
  const c = need(cases.get('refused'), 'case');
  const r = need(relay, 'relay');
  const acked = await send(c, 1);
  const [id] = [...acked.keys()];
  const failed = await waitForEvent(r, id!, (x) => x.status === 'failed', 'failed', 40_000);
  checkAttemptShape(failed);
  assert.equal(failed.attemptCount, c.delaysMs.length + 1);
  assert.equal(failed.attempts.length, c.delaysMs.length + 1);
  for (const a of failed.attempts) {
    assert.equal(a.outcome, 'failed');
    assert.equal(a.status, null);
    assert.match(a.error ?? '', /refused/i, 'the error says the connection was refused');
  }
  assert.equal(c.app.received.length, 0);

  // The app comes up where the route points; a replay delivers the same event.
  await listenAppOn(c.app, Number(new URL(c.target).port));
  const replayed = await r.api<{ id: string; status: string }>('POST', `/api/events/${id!}/replay`);
  assert.equal(replayed.id, id, 'a replay keeps the event id');
  const delivered = await waitForEvent(r, id!, (x) => x.status === 'delivered', 'delivered');
  const reqs = requestsFor(c.app, id!);
  console.log(
    `(d) refused: ${failed.attemptCount} attempts then failed (${describeAttempts(failed)}); ` +
      `after the replay: ${delivered.status}, attemptCount ${delivered.attemptCount}, ` +
      `${reqs.length} request at the app with x-postern-attempt ${attemptHeaders(reqs).join(',')}`,
  );
  const last = delivered.attempts.at(-1)!;
  assert.equal(last.outcome, 'delivered');
  assert.equal(last.status, 200);
  assert.equal(reqs.length, 1, 'the replay reached the app once');
  assert.deepEqual(reqs[0]!.body, acked.get(id!), 'with the body that was sent');
  assert.equal(c.app.received.length, 1, 'under the same event id, and nothing else arrived');
});

test('(e) 429 with Retry-After: 1 is honoured over a 100 ms schedule', async () => {
  const c = need(cases.get('429'), 'case');
  const r = need(relay, 'relay');
  const seen = new Map<string, number>();
  c.app.respond = (req, res) => {
    const n = (seen.get(eventIdOf(req)) ?? 0) + 1;
    seen.set(eventIdOf(req), n);
    if (n === 1) {
      res.writeHead(429, { 'retry-after': '1' });
      res.end('slow down');
    } else {
      res.end('ok');
    }
  };
  const acked = await send(c, 1);
  const [id] = [...acked.keys()];
  const e = await waitForEvent(r, id!, (x) => x.status === 'delivered', 'delivered');
  const reqs = requestsFor(c.app, id!);
  const appGap = reqs.length === 2 ? reqs[1]!.at - reqs[0]!.at : NaN;
  const logGap = e.attempts.length === 2 ? gapMs(e.attempts[0]!, e.attempts[1]!) : NaN;
  console.log(
    `(e) 429: ${e.attemptCount} attempts (${describeAttempts(e)}); next attempt ${appGap} ms ` +
      `later at the app, ${logGap} ms between logged attempts (schedule: ${c.delaysMs[0]} ms)`,
  );
  checkAttemptShape(e);
  assert.equal(e.attemptCount, 2);
  assert.deepEqual(
    e.attempts.map((a) => [a.outcome, a.status]),
    [
      ['failed', 429],
      ['delivered', 200],
    ],
  );
  assert.deepEqual(attemptHeaders(reqs), ['1', '2']);
  assert.ok(appGap >= 950, `the app saw the retry ${appGap} ms after the 429 (≥ ~1 s)`);
  assert.ok(logGap >= 950, `attempts logged ${logGap} ms apart (≥ ~1 s)`);
});
