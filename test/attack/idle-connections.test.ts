/**
 * Connections that never send a byte are not kept. One address holds at most
 * `--max-connections-per-address` connections: one more is answered 503 and closed at once,
 * while other addresses, the admin API and a live tunnel are served as usual. A connection that
 * has not sent a complete request head `--header-timeout-ms` after connecting is closed; a
 * tunnel and an event stream opened before them are not. Behind `--trust-proxy` the cap is on
 * requests in flight per forwarded address, and the proxy's own connections are not capped.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before } from 'node:test';
import { Agent, request } from 'undici';
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
import { connectionsHeldByRelay, endpointOf, errorCode, idFrom, need, tcp } from './support.ts';
import { test } from '../helpers/store.ts';

const CAP = 50;
const EXTRA = 20;
const HEAD_TIMEOUT_MS = 4_000;
/** The address the idle connections come from. */
const ATTACKER = '127.0.0.2';
/** Another client, for the webhooks sent during the attack. */
const OTHER = '127.0.0.3';

let relay: RelayHandle | undefined;
let proxied: RelayHandle | undefined;
let app: TestApp | undefined;
let runner: AgentHandle | undefined;
let hooksId = '';
const dirs: string[] = [];
const sockets: Socket[] = [];
const agents: Agent[] = [];

/** A raw connection and everything the relay sent on it. */
interface Conn {
  socket: Socket;
  /** performance.now() just before connecting: the relay's timers start after it. */
  dialledAt: number;
  /** Its own `address:port`, taken while open (a closed socket no longer knows it). */
  endpoint: string;
  data: Buffer;
  closedAt: number | null;
}

async function open(url: string, from?: string): Promise<Conn> {
  const dialledAt = performance.now();
  const socket = await tcp(url, sockets, from);
  const conn: Conn = {
    socket,
    dialledAt,
    endpoint: endpointOf(socket),
    data: Buffer.alloc(0),
    closedAt: null,
  };
  socket.on('data', (chunk: Buffer) => (conn.data = Buffer.concat([conn.data, chunk])));
  socket.on('error', () => {
    // A reset shows up as 'close'.
  });
  socket.once('close', () => (conn.closedAt = performance.now()));
  return conn;
}

const text = (c: Conn) => c.data.toString('latin1');
const status = (c: Conn) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text(c))?.[1] ?? '0');
const body = (c: Conn) => text(c).slice(text(c).indexOf('\r\n\r\n') + 4);

function from(address: string): Agent {
  const agent = new Agent({ connect: { localAddress: address }, connections: 2 });
  agents.push(agent);
  return agent;
}

async function metric(r: RelayHandle, line: string): Promise<number> {
  const res = await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${r.token}` } });
  const all = await res.text();
  assert.equal(res.status, 200, all);
  const found = all.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

async function held(r: RelayHandle, conns: Conn[]): Promise<number> {
  return connectionsHeldByRelay(
    need(r.proc.child.pid, 'relay pid'),
    Number(new URL(r.url).port),
    new Set(conns.map((c) => c.endpoint)),
  );
}

async function webhook(r: RelayHandle, dispatcher: Agent, tag: string): Promise<string> {
  const res = await request(`${r.url}/h/${hooksId}/${tag}`, {
    method: 'POST',
    body: tag,
    dispatcher,
  });
  const answer = await res.body.text();
  assert.equal(res.statusCode, 202, `${tag}: ${answer}`);
  return idFrom(answer);
}

/** A GET /api/stream on a raw connection, resolved once the stream has begun. */
async function stream(r: RelayHandle, headers: string[] = []): Promise<Conn> {
  const conn = await open(r.url);
  conn.socket.write(
    [
      'GET /api/stream HTTP/1.1',
      'Host: 127.0.0.1',
      `Authorization: Bearer ${r.token}`,
      ...headers,
      '',
      '',
    ].join('\r\n'),
  );
  await eventually(() => (text(conn).includes(': connected') ? true : undefined), 10_000, 'stream');
  assert.equal(status(conn), 200, text(conn));
  return conn;
}

const PROXIED_MAX = 3;

before(async () => {
  // Both relays at once: starting one is most of this file's time.
  [app, relay, proxied] = await Promise.all([
    startApp(),
    startRelay({
      extraArgs: [
        '--max-connections-per-address',
        String(CAP),
        '--header-timeout-ms',
        String(HEAD_TIMEOUT_MS),
      ],
    }),
    startRelay({
      extraArgs: ['--trust-proxy', '--max-connections-per-address', String(PROXIED_MAX)],
    }),
  ]);
  hooksId = (await relay.api<{ id: string }>('POST', '/api/channels', { name: 'hooks' })).id;
  const paired = await pairAgent(relay, ['hooks'], 'runner');
  dirs.push(paired.stateDir);
  runner = await startAgent(paired.stateDir, [{ channel: 'hooks', target: `${app.url}/in` }]);
});

after(async () => {
  for (const s of sockets) s.destroy();
  for (const a of agents) await a.close();
  await runner?.stop();
  await relay?.stop();
  await proxied?.stop();
  await app?.close();
  if (relay) dirs.push(relay.dataDir);
  if (proxied) dirs.push(proxied.dataDir);
  for (const d of dirs) await removeDir(d);
});

const idle: Conn[] = [];
let events: Conn | undefined;
let partial: Conn | undefined;

test(`${CAP + EXTRA} idle connections from one address: ${CAP} are held, ${EXTRA} get a 503 and are closed at once`, async () => {
  const r = need(relay, 'relay');
  // Opened before the attack: both must outlive the idle connections' deadline.
  events = await stream(r);
  partial = await open(r.url, OTHER);
  partial.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // never ends

  for (let at = 0; at < CAP + EXTRA; at += 10) {
    idle.push(...(await Promise.all(Array.from({ length: 10 }, () => open(r.url, ATTACKER)))));
  }
  await eventually(
    async () => {
      const closed = idle.filter((c) => c.closedAt !== null).length;
      return closed === EXTRA && (await held(r, idle)) === CAP ? true : undefined;
    },
    10_000,
    `${EXTRA} closed and ${CAP} held`,
  );
  const refused = idle.filter((c) => c.closedAt !== null);
  assert.deepEqual(
    refused.map((c) => `${status(c)} ${errorCode(body(c))}`),
    Array<string>(EXTRA).fill('503 ERR_UNAVAILABLE'),
    'each connection over the cap is answered 503 before it is closed',
  );
  assert.match(text(refused[0]!), /\r\nRetry-After: 1\r\n/);
  assert.deepEqual(
    idle.filter((c) => c.closedAt === null && c.data.length > 0).map(text),
    [],
    'the held ones got nothing',
  );

  // One more from the same address is refused too; its request is never served.
  const more = await open(r.url, ATTACKER);
  more.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await eventually(() => (more.closedAt !== null ? true : undefined), 10_000, 'refusal');
  assert.equal(`${status(more)} ${errorCode(body(more))}`, '503 ERR_UNAVAILABLE');
  assert.doesNotMatch(text(more), /"status":"ok"/);

  // Every other client is served: a webhook from another address, the admin API, the tunnel.
  const a = need(app, 'app');
  const other = await webhook(r, from(OTHER), 'from-other');
  const local = await webhook(r, from('127.0.0.1'), 'from-local');
  await a.waitFor(2, 20_000);
  assert.deepEqual(
    a.received.map((x) => String(x.headers['x-postern-event-id'])).sort(),
    [other, local].sort(),
  );
  const { channels } = await r.api<{ channels: { name: string }[] }>('GET', '/api/channels');
  assert.deepEqual(
    channels.map((c) => c.name),
    ['hooks'],
  );

  assert.equal(
    await metric(r, 'postern_connections_refused_total{limit="connections"}'),
    EXTRA + 1,
  );
  const lines = r.proc.lines.filter(
    (l) => l.msg === 'connection refused: too many open from one address',
  );
  // One line at most per 10 s however many are refused; the first counts only itself.
  assert.ok(lines.length >= 1 && lines.length < EXTRA + 1, `${lines.length} log lines`);
  assert.deepEqual(
    { address: lines[0]?.['address'], max: lines[0]?.['max'], refused: lines[0]?.['refused'] },
    { address: ATTACKER, max: CAP, refused: 1 },
  );
  assert.deepEqual(await metric(r, 'postern_connections_head_timeout_total'), 0);
});

test(`after ${HEAD_TIMEOUT_MS} ms without a complete request head a connection is closed; a tunnel and an event stream are not`, async () => {
  const r = need(relay, 'relay');
  const half = need(partial, 'partial head');
  const stillIdle = idle.filter((c) => c.closedAt === null);
  assert.equal(stillIdle.length, CAP);
  await eventually(
    async () =>
      stillIdle.every((c) => c.closedAt !== null) &&
      half.closedAt !== null &&
      (await held(r, [...stillIdle, half])) === 0
        ? true
        : undefined,
    HEAD_TIMEOUT_MS + 20_000,
    'the idle connections to be closed',
  );
  for (const c of [...stillIdle, half]) {
    const lived = need(c.closedAt ?? undefined, 'closedAt') - c.dialledAt;
    assert.ok(lived >= HEAD_TIMEOUT_MS, `not before the deadline: closed after ${lived} ms`);
  }
  assert.deepEqual(stillIdle.filter((c) => c.data.length > 0).map(text), [], 'closed silently');
  // Closed by the relay's deadline (nothing) or by Node's own header timeout (a 408): never served.
  assert.match(text(half), /^(|HTTP\/1\.1 408 [^]*)$/);
  assert.equal(
    await metric(r, 'postern_connections_head_timeout_total'),
    CAP + (status(half) === 408 ? 0 : 1),
  );

  // The tunnel and the stream, both older than the deadline, are still there and working.
  const stream = need(events, 'event stream');
  assert.equal(stream.closedAt, null, 'the event stream is open');
  const { agents: list } = await r.api<{ agents: { name: string; connected: boolean }[] }>(
    'GET',
    '/api/agents',
  );
  assert.deepEqual(
    list.map((x) => `${x.name}:${x.connected}`),
    ['runner:true'],
  );
  // The address is free again: a webhook from it is taken and delivered through the tunnel.
  const id = await webhook(r, from(ATTACKER), 'after-the-deadline');
  await need(app, 'app').waitFor(3, 20_000);
  assert.equal(need(app, 'app').received.at(-1)?.headers['x-postern-event-id'], id);
  await eventually(() => (text(stream).includes(id) ? true : undefined), 10_000, 'event on stream');
  assert.equal(stream.closedAt, null);
  const tunnelLog = need(runner, 'runner').proc.lines.map((l) => String(l.msg));
  assert.deepEqual(
    tunnelLog.filter((m) => /^(connected to|disconnected from) the relay/.test(m)),
    ['connected to the relay'],
    'the agent kept its one tunnel',
  );
});

test('behind --trust-proxy: requests in flight are capped per forwarded address, never the proxy', async () => {
  const max = PROXIED_MAX;
  const p = need(proxied, 'relay behind a proxy');
  const xff = (address: string) => `X-Forwarded-For: 192.0.2.1, ${address}`;
  // Three long-lived requests from one client, all through the proxy's own connections.
  const streams = await Promise.all(
    Array.from({ length: max }, () => stream(p, [xff('198.51.100.7')])),
  );

  const ask = async (headers: string[]): Promise<Conn> => {
    const conn = await open(p.url);
    conn.socket.write(
      ['GET /healthz HTTP/1.1', 'Host: 127.0.0.1', ...headers, '', ''].join('\r\n'),
    );
    await eventually(
      () => (status(conn) !== 0 && body(conn).length > 0 ? true : undefined),
      10_000,
      'answer',
    );
    return conn;
  };
  const refused = await ask([xff('198.51.100.7')]);
  assert.equal(
    `${status(refused)} ${errorCode(body(refused))}`,
    '503 ERR_UNAVAILABLE',
    text(refused),
  );
  assert.match(text(refused), /\r\nRetry-After: 1\r\n/i);
  const another = await ask([xff('198.51.100.8')]);
  assert.equal(status(another), 200, text(another));

  // The proxy's own requests (no forwarded address) on more connections than the cap.
  const own = await Promise.all(Array.from({ length: max * 3 }, () => ask([])));
  assert.deepEqual(own.map(status), Array<number>(max * 3).fill(200));
  assert.equal(own.filter((c) => c.closedAt !== null).length, 0, 'kept alive, not refused');

  // One request done: the client may send another (once the relay has seen it end).
  streams[0]!.socket.destroy();
  let busy = 0;
  await eventually(
    async () => {
      const conn = await ask([xff('198.51.100.7')]);
      if (status(conn) === 503) busy++;
      return status(conn) === 200 ? true : undefined;
    },
    10_000,
    'a slot to free up',
  );
  assert.equal(await metric(p, 'postern_connections_refused_total{limit="requests"}'), 1 + busy);
  assert.equal(await metric(p, 'postern_connections_refused_total{limit="connections"}'), 0);
});
