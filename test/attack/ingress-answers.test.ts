/**
 * Ingress answers cannot act in the relay's origin, and ingress refuses what the tunnel
 * cannot carry. Every answer of the ingress path (202, errors, handshakes, a sync app's own
 * answer) is sandboxed and never sniffed; the origin-scoped headers of an app's answer are
 * dropped; a service worker script is never served. A webhook with more headers than a
 * `deliver` frame may carry is refused with 431 before it is stored, so it cannot wedge an
 * agent, and the events of other channels keep flowing.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before } from 'node:test';
import { request } from 'undici';
import { MAX_HEADER_PAIRS } from '../../shared/protocol.ts';
import { startApp, type TestApp } from '../helpers/app.ts';
import {
  listEvents,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  waitForEventStatus,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { rawHttp } from './support.ts';
import { test } from '../helpers/store.ts';

const SANDBOX = "sandbox; default-src 'none'; frame-ancestors 'none'";

let relay: RelayHandle;
let app: TestApp;
let agent: AgentHandle;
let stateDir: string;
const ids = new Map<string, string>();
const sockets: Socket[] = [];

before(async () => {
  app = await startApp();
  relay = await startRelay();
  for (const [name, extra] of [
    ['plain', {}],
    ['other', {}],
    ['sync', { response: { mode: 'sync', timeoutMs: 10_000 } }],
    ['signed', { verify: { provider: 'github', secret: 'gh-secret-123456' } }],
    ['meta', { verify: { provider: 'meta', secret: 'meta-secret-1234', verifyToken: 'vt-1' } }],
    ['limited', { rateLimit: { perSecond: 1, burst: 1 }, maxBodyBytes: 10 }],
  ] as const) {
    const c = await relay.api<{ id: string }>('POST', '/api/channels', { name, ...extra });
    ids.set(name, c.id);
  }
  ({ stateDir } = await pairAgent(relay, ['plain', 'other', 'sync']));
  agent = await startAgent(stateDir, [
    { channel: 'plain', target: `${app.url}/plain` },
    { channel: 'other', target: `${app.url}/other` },
    { channel: 'sync', target: `${app.url}/sync`, sync: true },
  ]);
});

after(async () => {
  for (const s of sockets) s.destroy();
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(stateDir);
});

const url = (name: string, suffix = '') => `${relay.url}/h/${ids.get(name)}${suffix}`;

function assertSandboxed(headers: Record<string, string | string[] | undefined>, what: string) {
  assert.equal(headers['content-security-policy'], SANDBOX, `${what}: CSP sandbox`);
  assert.equal(headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
}

test('every kind of ingress answer is sandboxed and not sniffed', async () => {
  const answers: [string, Awaited<ReturnType<typeof request>>][] = [
    ['202', await request(url('plain', '/x'), { method: 'POST', body: '{}' })],
    ['404 unknown channel', await request(`${relay.url}/h/ch_nope/x`, { method: 'POST' })],
    ['401 forged', await request(url('signed'), { method: 'POST', body: '{"a":1}' })],
    [
      'handshake',
      await request(
        url('meta', '?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=<b>x</b>'),
      ),
    ],
    ['413', await request(url('limited'), { method: 'POST', body: 'more than ten bytes' })],
    ['429', await request(url('limited'), { method: 'POST', body: '1' })],
  ];
  const statuses = answers.map(([what, res]) => `${what}=${res.statusCode}`);
  assert.deepEqual(
    answers.map(([, res]) => res.statusCode),
    [202, 404, 401, 200, 413, 429],
    statuses.join(' '),
  );
  for (const [what, res] of answers) {
    await res.body.text();
    assertSandboxed(res.headers, what);
  }
});

test("a sync app's answer keeps its content but loses every origin-scoped header", async () => {
  app.respond = (_req, res) => {
    res.statusCode = 200;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.setHeader('x-app', 'kept');
    res.setHeader('set-cookie', ['session=stolen; Path=/', 'other=1']);
    res.setHeader('service-worker-allowed', '/');
    res.setHeader('clear-site-data', '"storage"');
    res.setHeader('content-security-policy', "script-src 'unsafe-inline'");
    res.setHeader('x-content-type-options', 'sniff-please');
    res.setHeader('strict-transport-security', 'max-age=31536000; includeSubDomains');
    res.setHeader('alt-svc', 'h2="evil.example:443"');
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('link', '</h/x/sw.js>; rel=serviceworker');
    res.setHeader('refresh', '0; url=/api/agents');
    res.end('<script>steal(sessionStorage)</script>');
  };
  const res = await request(url('sync', '/page?q=1'), { method: 'POST', body: 'x' });
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), '<script>steal(sessionStorage)</script>');
  assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(res.headers['x-app'], 'kept');
  assert.ok(typeof res.headers['x-postern-event-id'] === 'string');
  for (const name of [
    'set-cookie',
    'service-worker-allowed',
    'clear-site-data',
    'strict-transport-security',
    'alt-svc',
    'access-control-allow-origin',
    'link',
    'refresh',
  ]) {
    assert.equal(res.headers[name], undefined, `${name} dropped`);
  }
  assertSandboxed(res.headers, 'sync answer');
  app.respond = (_req, r) => void r.end('ok');
});

test('a service worker script is never fetched from an ingress path', async () => {
  const before = app.received.length;
  const res = await request(url('sync', '/sw.js'), { headers: { 'service-worker': 'script' } });
  assert.equal(res.statusCode, 403);
  const body = (await res.body.json()) as { error: { code: string } };
  assert.equal(body.error.code, 'ERR_FORBIDDEN');
  assertSandboxed(res.headers, '403');
  const events = await listEvents<{ id: string; path: string }>(relay, ids.get('sync'));
  assert.ok(
    events.every((e) => e.path !== '/sw.js'),
    'nothing stored for the worker fetch',
  );
  assert.equal(app.received.length, before, 'the app was never asked');
});

test(`a webhook with more than ${MAX_HEADER_PAIRS} headers is refused with 431 and stored nowhere`, async () => {
  const channel = ids.get('plain')!;
  const before = (await listEvents(relay, channel)).length;
  // Exactly `n` header lines, Host and Content-Length included, over a raw socket.
  const send = (suffix: string, n: number) =>
    rawHttp(relay.url, sockets, (socket) => {
      const lines = [
        `POST /h/${channel}${suffix} HTTP/1.1`,
        'host: 127.0.0.1',
        'content-length: 1',
      ];
      for (let i = 0; lines.length - 1 < n; i++) lines.push(`x-h${i}: ${i}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\nx`);
    });
  const exact = await send('/exact', MAX_HEADER_PAIRS);
  assert.equal(exact.status, 202, exact.body);
  for (const n of [MAX_HEADER_PAIRS + 1, 600]) {
    const res = await send('/too-many', n);
    assert.equal(res.status, 431, res.body);
    assert.match(res.body, new RegExp(`at most ${MAX_HEADER_PAIRS}`));
    assert.match(res.body, /ERR_HEADERS_TOO_LARGE/);
  }
  const after = await listEvents<{ id: string; path: string }>(relay, channel);
  assert.equal(after.length, before + 1, 'only the request that fits was stored');
  assert.ok(after.every((e) => e.path !== '/too-many'));
  // The one at the limit travels, and the agent keeps serving every channel.
  await waitForEventStatus(relay, after.find((e) => e.path === '/exact')!.id, 'delivered');
  const res = await request(url('other', '/next'), { method: 'POST', body: 'next' });
  const { id } = (await res.body.json()) as { id: string };
  await waitForEventStatus(relay, id, 'delivered');
  const exactAtApp = app.received.find((r) => r.url === '/plain/exact');
  assert.ok(exactAtApp, 'the app got the request at the limit');
  assert.equal(exactAtApp.headers['x-h0'], '0');
  assert.equal(exactAtApp.headers[`x-h${MAX_HEADER_PAIRS - 3}`], String(MAX_HEADER_PAIRS - 3));
  assert.equal(exactAtApp.headers[`x-h${MAX_HEADER_PAIRS - 2}`], undefined);
});
