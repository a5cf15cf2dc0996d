/**
 * Abuse from inside an authenticated tunnel (a valid JWT and `hello`), and upgrades aimed at
 * other paths: acks for events this session never got change nothing, a ping flood is
 * answered while the relay keeps serving, a second hello or a lying length field closes with
 * 1002, a session that stops answering pings is dropped after ~3 heartbeats, and an upgrade to
 * any path but /tunnel is a 404 that never becomes a WebSocket.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before } from 'node:test';
import { request } from 'undici';
import type { WebSocket } from 'ws';
import { encodeFrame } from '../../shared/codec.ts';
import { CloseCode } from '../../shared/protocol.ts';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { dial, loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import {
  FrameReader,
  HELLO,
  closeSocket,
  errorCode,
  head,
  healthz,
  idFrom,
  listEvents,
  need,
  rawFrame,
  rawHttp,
  sayHello,
  type Closed,
  type EventDetail,
} from './support.ts';
import { test } from '../helpers/store.ts';

const HEARTBEAT_MS = 200;
const PINGS = 1_000;

/** The main relay, default heartbeat (10 s). */
let relay: RelayHandle | undefined;
/** A relay with --heartbeat-ms 200, for the dead-peer check. */
let hbRelay: RelayHandle | undefined;
let app: TestApp | undefined;
let realAgent: AgentHandle | undefined;
/** Paired for `abuse` only; dialled by hand. */
let raw: TestIdentity | undefined;
/** Paired on the heartbeat relay. */
let hb: TestIdentity | undefined;
const channels = new Map<string, string>();
const dirs: string[] = [];
const sockets: Socket[] = [];
const websockets: WebSocket[] = [];

before(async () => {
  app = await startApp();
  const a = app;
  const setUpMain = async () => {
    relay = await startRelay();
    const r = relay;
    for (const name of ['abuse', 'real', 'orphan']) {
      channels.set(name, (await r.api<{ id: string }>('POST', '/api/channels', { name })).id);
    }
    const [rawPair, realPair] = await Promise.all([
      pairAgent(r, ['abuse'], 'raw'),
      pairAgent(r, ['real'], 'real'),
    ]);
    dirs.push(rawPair.stateDir, realPair.stateDir);
    raw = await loadIdentity(rawPair.stateDir);
    realAgent = await startAgent(realPair.stateDir, [{ channel: 'real', target: `${a.url}/real` }]);
  };
  const setUpHeartbeat = async () => {
    hbRelay = await startRelay({ heartbeatMs: HEARTBEAT_MS });
    await hbRelay.api<{ id: string }>('POST', '/api/channels', { name: 'hb' });
    const pair = await pairAgent(hbRelay, ['hb'], 'hb');
    dirs.push(pair.stateDir);
    hb = await loadIdentity(pair.stateDir);
  };
  await Promise.all([setUpMain(), setUpHeartbeat()]);
});

after(async () => {
  for (const ws of websockets) ws.terminate();
  for (const s of sockets) s.destroy();
  await realAgent?.stop();
  await relay?.stop();
  await hbRelay?.stop();
  await app?.close();
  if (relay) dirs.push(relay.dataDir);
  if (hbRelay) dirs.push(hbRelay.dataDir);
  for (const d of dirs) await removeDir(d);
});

function ch(name: string): string {
  return need(channels.get(name), `channel ${name}`);
}

/** Dials with a fresh valid token and says hello; returns the reader of the live session. */
async function session(on: RelayHandle, identity: TestIdentity): Promise<FrameReader> {
  const opened = await dial(on.url, await mint(identity));
  assert.ok(opened.ws, `the upgrade is accepted (got ${opened.status})`);
  websockets.push(opened.ws);
  const reader = new FrameReader(opened.ws);
  await sayHello(reader);
  return reader;
}

/** Sends a ping and waits for its pong: the session is up and has handled what came before. */
async function roundTrip(reader: FrameReader, ts: number): Promise<void> {
  const pong = reader.next((f) => f.type === 'pong' && f.ts === ts);
  reader.ws.send(encodeFrame({ type: 'ping', ts }));
  await pong;
}

async function webhook(r: RelayHandle, channel: string, body: string): Promise<string> {
  const res = await request(`${r.url}/h/${ch(channel)}`, { method: 'POST', body });
  const text = await res.body.text();
  assert.equal(res.statusCode, 202, text);
  return idFrom(text);
}

async function detail(r: RelayHandle, id: string): Promise<EventDetail> {
  return r.api<EventDetail>('GET', `/api/events/${id}`);
}

async function statusOf(r: RelayHandle, id: string, status: string): Promise<EventDetail> {
  return eventually(
    async () => {
      const e = await detail(r, id);
      return e.status === status ? e : undefined;
    },
    30_000,
    `event ${id} to be ${status}`,
  );
}

async function expectClose(reader: FrameReader, what: string): Promise<Closed> {
  const outcome = await reader.closeWithin(15_000);
  assert.notEqual(outcome, 'timeout', `${what}: the relay closed the session`);
  return outcome as Closed;
}

test('an ack for an event this session was never sent is ignored: the session stays up, no event changes', async () => {
  const r = need(relay, 'relay');
  const a = need(app, 'app');
  // Two events the real agent delivers, two that wait on a channel nobody serves.
  const deliveredIds = [await webhook(r, 'real', 'r1'), await webhook(r, 'real', 'r2')];
  for (const id of deliveredIds) await statusOf(r, id, 'delivered');
  const orphanIds = [await webhook(r, 'orphan', 'o1'), await webhook(r, 'orphan', 'o2')];
  const listBefore = await listEvents(r);
  assert.equal(listBefore.length, 4);
  const detailsBefore = await Promise.all(listBefore.map((e) => detail(r, e.id)));
  const appBefore = a.received.length;
  assert.equal(appBefore, 2);

  const reader = await session(r, need(raw, 'raw identity'));
  const acks: [string, string, Record<string, unknown>][] = [
    ['an id that never existed', 'evt_00000000000000000000000000', { outcome: 'delivered' }],
    ...orphanIds.map((id): [string, string, Record<string, unknown>] => [
      `a queued event of a channel this agent is not granted (${id})`,
      id,
      { outcome: 'delivered', status: 200 },
    ]),
    ...deliveredIds.map((id): [string, string, Record<string, unknown>] => [
      `an event another agent delivered (${id})`,
      id,
      { outcome: 'failed', status: 500, error: 'forged failure', retryAfterMs: 1 },
    ]),
    ['no_route for a foreign event', orphanIds[0]!, { outcome: 'no_route' }],
  ];
  for (const [, eventId, fields] of acks) {
    reader.ws.send(rawFrame(JSON.stringify({ type: 'ack', eventId, durationMs: 3, ...fields })));
  }
  // The pong comes after the relay handled every ack (frames are handled in order).
  await roundTrip(reader, 4242);
  assert.equal(reader.closedWith, undefined, 'the session is still open');

  assert.deepEqual(await listEvents(r), listBefore, 'GET /api/events is unchanged');
  assert.deepEqual(
    await Promise.all(listBefore.map((e) => detail(r, e.id))),
    detailsBefore,
    'every event, with its attempts, is unchanged',
  );
  assert.deepEqual(
    (await listEvents(r, '&status=queued')).map((e) => e.id).sort(),
    [...orphanIds].sort(),
    'the orphan events are still queued',
  );
  assert.equal(a.received.length, appBefore, 'nothing was redelivered');
  // The relay's log says why nothing changed: each ack was seen and ignored. (Its log lines
  // travel on another pipe than the pong, so they may come a little later.)
  const rawId = need(raw, 'raw identity').agentId;
  const ignored = () =>
    r.proc.lines.filter(
      (l) =>
        l.msg === 'ack for an event not in flight on this session; ignored' &&
        l['agentId'] === rawId,
    ).length;
  await eventually(() => (ignored() >= acks.length ? true : undefined), 10_000, 'log lines');
  assert.equal(ignored(), acks.length, 'the relay noted each ignored ack, once');
  const { agents } = await r.api<{ agents: { name: string; connected: boolean }[] }>(
    'GET',
    '/api/agents',
  );
  assert.deepEqual(agents.map((x) => `${x.name}:${x.connected}`).sort(), ['raw:true', 'real:true']);
  await closeSocket(reader.ws);
});

test(`a flood of ${PINGS} pings is answered in order while /healthz keeps answering`, async () => {
  const r = need(relay, 'relay');
  const reader = await session(r, need(raw, 'raw identity'));
  const health: Promise<number>[] = [];
  for (let ts = 1; ts <= PINGS; ts++) {
    reader.ws.send(encodeFrame({ type: 'ping', ts }));
    if (ts % 200 === 0) health.push(healthz(r.url));
  }
  const allPongs = await eventually(
    () => {
      const pongs = reader.frames.filter((f) => f.type === 'pong');
      if (reader.closedWith) throw new Error(`closed with ${reader.closedWith.code}`);
      return pongs.length >= PINGS ? pongs : undefined;
    },
    30_000,
    `${PINGS} pongs`,
  );
  assert.deepEqual(
    allPongs.map((f) => (f.type === 'pong' ? f.ts : -1)),
    Array.from({ length: PINGS }, (_, i) => i + 1),
    `${PINGS} pings sent, ${PINGS} pongs with the same ts, in order, none extra`,
  );
  assert.deepEqual(await Promise.all(health), [200, 200, 200, 200, 200], '/healthz during');
  assert.deepEqual(reader.undecodable, []);
  await roundTrip(reader, PINGS + 1);
  assert.equal(reader.closedWith, undefined, 'the flooding session is still open');
  assert.equal(await healthz(r.url), 200, '/healthz after');
  assert.equal(r.proc.child.exitCode, null, 'the relay process is running');
  // The real agent's session was not disturbed.
  const id = await webhook(r, 'real', 'after the ping flood');
  await statusOf(r, id, 'delivered');
  await closeSocket(reader.ws);
});

test('a second hello on a live session closes it with 1002', async () => {
  const r = need(relay, 'relay');
  const reader = await session(r, need(raw, 'raw identity'));
  reader.ws.send(HELLO);
  const closed = await expectClose(reader, 'second hello');
  assert.equal(closed.code, CloseCode.protocolError, `closed with ${closed.code} ${closed.reason}`);
  assert.equal(reader.frames.filter((f) => f.type === 'welcome').length, 1, 'one welcome only');
  // Only that session: a fresh one opens, the relay serves.
  const again = await session(r, need(raw, 'raw identity'));
  await roundTrip(again, 7);
  await closeSocket(again.ws);
  assert.equal(await healthz(r.url), 200);
});

test('after hello, a frame whose JSON length claims more bytes than sent closes with 1002', async () => {
  const r = need(relay, 'relay');
  const ping = Buffer.from(JSON.stringify({ type: 'ping', ts: 1 }), 'utf8');
  const cases: [string, Buffer][] = [
    [
      `length ${ping.length + 1} for ${ping.length} bytes of JSON`,
      Buffer.concat([Buffer.from([0, 0, 0, ping.length + 1]), ping]),
    ],
    ['length 4096 for a 14-byte frame', Buffer.concat([Buffer.from([0, 0, 0x10, 0]), ping])],
    ['length 0xFFFFFFFF', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), ping])],
  ];
  const outcomes: string[] = [];
  for (const [what, frame] of cases) {
    const reader = await session(r, need(raw, 'raw identity'));
    await roundTrip(reader, 1); // a well-formed frame is fine on this session
    reader.ws.send(frame);
    const closed = await expectClose(reader, what);
    outcomes.push(`${what}: ${closed.code}`);
  }
  assert.deepEqual(
    outcomes,
    cases.map(([what]) => `${what}: ${CloseCode.protocolError}`),
  );
  assert.equal(await healthz(r.url), 200);
  assert.equal(r.proc.child.exitCode, null);
});

test('an ack whose answer breaks a bound closes with 1002 and records nothing; a well-formed one is kept', async () => {
  const r = need(relay, 'relay');
  const identity = need(raw, 'raw identity');
  const deliverOf = (reader: FrameReader, id: string) =>
    eventually(
      () => reader.frames.find((f) => f.type === 'deliver' && f.eventId === id),
      15_000,
      `a deliver of ${id}`,
    );
  const reader = await session(r, identity);
  const id = await webhook(r, 'abuse', 'answer me');
  await deliverOf(reader, id);
  // Nine pairs of 1012 bytes: past the 8192 bytes an answer's headers may take.
  const headers = Array.from({ length: 9 }, (_, i) => [`x-${i}`, 'v'.repeat(1006)]);
  const answer = { headers, bodyBytes: 0, truncated: false };
  const ack = { type: 'ack', eventId: id, outcome: 'failed', status: 500, durationMs: 1 };
  reader.ws.send(rawFrame(JSON.stringify({ ...ack, response: answer })));
  const closed = await expectClose(reader, 'an answer with 9108 bytes of headers');
  assert.equal(closed.code, CloseCode.protocolError, `closed with ${closed.code} ${closed.reason}`);
  assert.match(closed.reason, /response\.headers/);

  // The event is offered again on the next session, with no attempt recorded.
  const again = await session(r, identity);
  await deliverOf(again, id);
  assert.deepEqual((await detail(r, id)).attempts, []);
  again.ws.send(
    encodeFrame({
      type: 'ack',
      eventId: id,
      outcome: 'delivered',
      status: 200,
      durationMs: 1,
      response: { headers: [['x-ok', '1']], bodyBytes: 2, truncated: false },
      body: Buffer.from('ok'),
    }),
  );
  const done = await statusOf(r, id, 'delivered');
  assert.deepEqual(done.attempts.length, 1);
  assert.deepEqual((done.attempts[0] as { response?: unknown }).response, {
    headers: [['x-ok', '1']],
    body: Buffer.from('ok').toString('base64'),
    bodyBytes: 2,
    truncated: false,
  });
  await closeSocket(again.ws);
  assert.equal(await healthz(r.url), 200);
});

test(`a session that stops answering pings is dropped after ~3 heartbeats (--heartbeat-ms ${HEARTBEAT_MS}), within 5 s`, async () => {
  const r = need(hbRelay, 'heartbeat relay');
  const opened = await dial(r.url, await mint(need(hb, 'hb identity')));
  assert.ok(opened.ws, `the upgrade is accepted (got ${opened.status})`);
  websockets.push(opened.ws);
  const reader = new FrameReader(opened.ws);
  const welcome = await sayHello(reader);
  const welcomedAt = performance.now();
  assert.equal(welcome.heartbeatMs, HEARTBEAT_MS);
  const outcome = await reader.closeWithin(5_000);
  assert.notEqual(outcome, 'timeout', 'the silent session was dropped within 5 s of welcome');
  const closed = outcome as Closed;
  console.log(
    `silent session dropped ${(closed.at - welcomedAt).toFixed(0)} ms after welcome ` +
      `(code ${closed.code}); ${reader.frames.filter((f) => f.type === 'ping').length} pings unanswered`,
  );
  // The relay's own account: it dropped this session for silence longer than 3 heartbeats.
  const line = await r.proc.waitFor(
    (l) =>
      l.msg === 'agent stopped answering heartbeats; dropping the session' &&
      l['sessionId'] === welcome.sessionId,
    5_000,
  );
  const silentMs = Number(line['silentMs']);
  assert.ok(silentMs > 3 * HEARTBEAT_MS, `dropped after ${silentMs} ms of silence`);
  assert.ok(silentMs <= 5_000, `dropped after ${silentMs} ms of silence`);
});

test('a session that answers pings is kept well past 3 heartbeats (control)', async () => {
  const r = need(hbRelay, 'heartbeat relay');
  const opened = await dial(r.url, await mint(need(hb, 'hb identity')));
  assert.ok(opened.ws, `the upgrade is accepted (got ${opened.status})`);
  websockets.push(opened.ws);
  const reader = new FrameReader(opened.ws);
  reader.answerPings = true;
  const welcome = await sayHello(reader);
  // 15 heartbeat intervals, answering each of the relay's pings as an agent does.
  const outcome = await reader.closeWithin(15 * HEARTBEAT_MS);
  assert.equal(outcome, 'timeout', 'the session that answers pings is still open');
  const pings = reader.frames.filter((f) => f.type === 'ping').length;
  assert.ok(pings >= 3, `the relay kept pinging (${pings} pings), and got its pongs`);
  assert.equal(
    r.proc.lines.filter((l) => l['sessionId'] === welcome.sessionId && l.level === 40).length,
    0,
    'no warning about this session',
  );
  await closeSocket(reader.ws);
});

test('a session dropped for missed heartbeats is told so with close code 4001 (DESIGN: "4001 no hello in time / heartbeats missed")', async () => {
  const r = need(hbRelay, 'heartbeat relay');
  const opened = await dial(r.url, await mint(need(hb, 'hb identity')));
  assert.ok(opened.ws, `the upgrade is accepted (got ${opened.status})`);
  websockets.push(opened.ws);
  const reader = new FrameReader(opened.ws);
  await sayHello(reader);
  const outcome = await reader.closeWithin(5_000);
  assert.notEqual(outcome, 'timeout', 'the silent session was dropped within 5 s');
  const closed = outcome as Closed;
  assert.equal(
    closed.code,
    CloseCode.timeout,
    `a live but silent peer gets a close frame with 4001, not an abnormal close (got ${closed.code})`,
  );
});

test('upgrades to any path but /tunnel get 404 and never become a WebSocket', async () => {
  const r = need(relay, 'relay');
  const token = await mint(need(raw, 'raw identity'));
  const eventsBefore = await listEvents(r);
  const upgrade = (target: string, auth: string | null) =>
    head('GET', target, [
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...(auth === null ? [] : [`Authorization: Bearer ${auth}`]),
    ]);
  const cases: [string, string | null][] = [
    ['/tunnelx', null],
    ['/api/channels', null],
    ['/tunnel/', null],
    ['/tunnel/../tunnel', null],
    ['/TUNNEL', null],
    ['/healthz', null],
    [`/h/${ch('abuse')}`, null],
    ['/', null],
    // A valid token does not open other paths either.
    ['/tunnelx', token],
    ['/api/channels', token],
  ];
  const answers: string[] = [];
  for (const [target, auth] of cases) {
    const res = await rawHttp(r.url, sockets, (s) => s.write(upgrade(target, auth)));
    answers.push(`${target}${auth ? ' (token)' : ''}: ${res.status} closed=${res.closed}`);
    assert.doesNotMatch(res.head, /sec-websocket-accept/i, `${target}: no handshake answer`);
    assert.match(errorCode(res.body), /^ERR_/, `${target}: a JSON error answer`);
  }
  assert.deepEqual(
    answers,
    cases.map(([target, auth]) => `${target}${auth ? ' (token)' : ''}: 404 closed=true`),
    'each is a 404, and the relay closes the connection',
  );
  assert.deepEqual(await listEvents(r), eventsBefore, 'the upgrade to /h/… stored nothing');
  assert.equal(await healthz(r.url), 200);
});
