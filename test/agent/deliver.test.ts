import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Route } from '../../agent/config.ts';
import { appHeaders, Deliverer, targetUrl } from '../../agent/deliver.ts';
import type { HeaderPair, RelayFrame } from '../../shared/protocol.ts';
import { startApp, type Responder, type TestApp } from '../helpers/app.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const BODY = Buffer.concat([Buffer.from('{"action":"push"}'), Buffer.from([0xff, 0x00, 0x80])]);

function route(target: string, extra: Partial<Route> = {}): Route {
  return {
    channel: 'ch_1',
    target: new URL(target),
    timeoutMs: 5_000,
    signingSecret: null,
    name: 'github#0',
    match: null,
    concurrency: null,
    sync: false,
    ...extra,
  };
}

function frame(extra: Partial<DeliverFrame> = {}): DeliverFrame {
  return {
    type: 'deliver',
    eventId: 'evt_01hx0000000000000000000000',
    channelId: 'ch_1',
    channelName: 'github',
    attempt: 2,
    method: 'POST',
    path: '',
    query: '',
    headers: [],
    originalUrl: 'https://relay.example.com/h/ch_1',
    remoteAddress: '198.51.100.7',
    receivedAt: 1_700_000_000_000,
    wantResponse: false,
    skipRoutes: [],
    replay: 0,
    body: BODY,
    ...extra,
  };
}

// ---- targetUrl -----------------------------------------------------------------------------

const GH = route('http://127.0.0.1:3000/hooks/github');

function href(r: Route, path: string, query = ''): string | null {
  return targetUrl(r, frame({ path, query }))?.href ?? null;
}

test('targetUrl: no suffix and no query is the target itself', () => {
  assert.equal(href(GH, ''), 'http://127.0.0.1:3000/hooks/github');
});

test('targetUrl joins target, path suffix and query', () => {
  assert.equal(href(GH, '/push'), 'http://127.0.0.1:3000/hooks/github/push');
  assert.equal(
    href(GH, '/push/a/b', 'x=1&y=2'),
    'http://127.0.0.1:3000/hooks/github/push/a/b?x=1&y=2',
  );
  assert.equal(href(GH, '', 'a=%20b&a=2'), 'http://127.0.0.1:3000/hooks/github?a=%20b&a=2');
  assert.equal(href(GH, '/'), 'http://127.0.0.1:3000/hooks/github/');
});

test('targetUrl with a target ending in a slash does not double it', () => {
  const r = route('http://127.0.0.1:3000/hooks/');
  assert.equal(href(r, ''), 'http://127.0.0.1:3000/hooks/');
  assert.equal(href(r, '/x', 'q=1'), 'http://127.0.0.1:3000/hooks/x?q=1');
});

test('targetUrl refuses .. segments that climb out of the target path', () => {
  for (const path of [
    '/..',
    '/../admin',
    '/../../admin',
    '/a/../../admin',
    '/../github-evil',
    '/%2e%2e/admin',
    '/%2E%2E/admin',
    '/.%2e/admin',
    '/%2e./admin',
    '/%2e%2e',
    '/a/%2e%2e/%2e%2e/admin',
    '/\\..\\..\\admin',
  ]) {
    assert.equal(href(GH, path), null, `"${path}" was let through`);
  }
});

test('targetUrl allows .. segments that stay inside the target path', () => {
  assert.equal(href(GH, '/a/..'), 'http://127.0.0.1:3000/hooks/github/');
  assert.equal(href(GH, '/a/../b'), 'http://127.0.0.1:3000/hooks/github/b');
  assert.equal(href(GH, '/a/%2e%2e/b'), 'http://127.0.0.1:3000/hooks/github/b');
  assert.equal(href(GH, '/./x'), 'http://127.0.0.1:3000/hooks/github/x');
});

test('targetUrl stays on the target origin', () => {
  for (const path of ['//evil.example/x', '/@evil.example/x', '/:80@evil.example']) {
    const url = targetUrl(GH, frame({ path }));
    assert.ok(url !== null, path);
    assert.equal(url.origin, 'http://127.0.0.1:3000');
    assert.equal(url.host, '127.0.0.1:3000');
  }
  const root = route('http://127.0.0.1:3000');
  assert.equal(href(root, '//evil.example/x'), 'http://127.0.0.1:3000//evil.example/x');
  assert.equal(href(root, '/../../x'), 'http://127.0.0.1:3000/x');
});

// ---- appHeaders ----------------------------------------------------------------------------

const NOW = 1_614_265_330_123;

test('appHeaders: hop-by-hop removed, host set, x-postern-* and x-forwarded-* set', () => {
  const headers: HeaderPair[] = [
    ['Host', 'relay.example.com'],
    ['Connection', 'keep-alive, X-Hop'],
    ['X-Hop', 'named by Connection'],
    ['Keep-Alive', 'timeout=5'],
    ['Transfer-Encoding', 'chunked'],
    ['Content-Length', '20'],
    ['Content-Type', 'application/json'],
    ['X-GitHub-Event', 'push'],
    ['x-github-event', 'second value'],
    ['X-Hub-Signature-256', 'sha256=abc'],
    ['X-Postern-Event-Id', 'evt_spoofed'],
    ['x-postern-attempt', '99'],
    ['X-Postern-Channel', 'spoofed'],
    ['X-Postern-Original-Url', 'https://spoofed.example/'],
    ['X-Forwarded-For', '203.0.113.9'],
    ['X-Forwarded-Host', 'spoofed.example'],
    ['X-Forwarded-Proto', 'gopher'],
  ];
  const f = frame({ headers, originalUrl: 'https://relay.example.com/h/ch_1/push?x=1' });
  assert.deepEqual(appHeaders(GH, f, NOW), [
    ['host', '127.0.0.1:3000'],
    ['Content-Type', 'application/json'],
    ['X-GitHub-Event', 'push'],
    ['x-github-event', 'second value'],
    ['X-Hub-Signature-256', 'sha256=abc'],
    ['x-postern-event-id', 'evt_01hx0000000000000000000000'],
    ['x-postern-attempt', '2'],
    ['x-postern-channel', 'github'],
    ['x-postern-original-url', 'https://relay.example.com/h/ch_1/push?x=1'],
    ['x-forwarded-for', '203.0.113.9, 198.51.100.7'],
    ['x-forwarded-host', 'relay.example.com'],
    ['x-forwarded-proto', 'https'],
  ]);
});

test('appHeaders: without incoming host or x-forwarded-for, both come from the relay', () => {
  const f = frame({
    headers: [['Accept', '*/*']],
    originalUrl: 'http://relay.example.com:8080/h/ch_1',
  });
  assert.deepEqual(appHeaders(GH, f, NOW), [
    ['host', '127.0.0.1:3000'],
    ['Accept', '*/*'],
    ['x-postern-event-id', 'evt_01hx0000000000000000000000'],
    ['x-postern-attempt', '2'],
    ['x-postern-channel', 'github'],
    ['x-postern-original-url', 'http://relay.example.com:8080/h/ch_1'],
    ['x-forwarded-for', '198.51.100.7'],
    ['x-forwarded-host', 'relay.example.com:8080'],
    ['x-forwarded-proto', 'http'],
  ]);
});

test('appHeaders: any incoming x-postern-* header is dropped, not only the four set', () => {
  const headers: HeaderPair[] = [
    ['X-Postern-Verified', 'true'],
    ['x-postern-agent', 'ag_spoofed'],
    ['X-Other', 'kept'],
  ];
  const out = appHeaders(GH, frame({ headers }), NOW);
  const postern = out.filter(([n]) => n.toLowerCase().startsWith('x-postern-')).map(([n]) => n);
  assert.deepEqual(postern, [
    'x-postern-event-id',
    'x-postern-attempt',
    'x-postern-channel',
    'x-postern-original-url',
  ]);
  assert.deepEqual(
    out.filter(([n]) => n === 'X-Other'),
    [['X-Other', 'kept']],
  );
});

test('appHeaders: webhook-* signature headers when the route has a signingSecret', () => {
  const signed = route('http://127.0.0.1:3000/hooks/github', { signingSecret: SECRET });
  const f = frame({
    headers: [
      ['webhook-id', 'msg_spoofed'],
      ['Webhook-Signature', 'v1,spoofed'],
      ['webhook-timestamp', '1'],
    ],
  });
  const out = appHeaders(signed, f, NOW);
  const webhook = out.filter(([n]) => n.toLowerCase().startsWith('webhook-'));
  const ts = String(Math.floor(NOW / 1000));
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const mac = createHmac('sha256', key).update(`${f.eventId}.${ts}.`).update(BODY).digest('base64');
  assert.deepEqual(webhook, [
    ['webhook-id', f.eventId],
    ['webhook-timestamp', ts],
    ['webhook-signature', `v1,${mac}`],
  ]);
});

test('appHeaders: the Standard Webhooks example vector', () => {
  const signed = route('http://127.0.0.1:3000/', { signingSecret: SECRET });
  const f = frame({
    eventId: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    body: Buffer.from('{"test": 2432232314}'),
  });
  const out = appHeaders(signed, f, 1_614_265_330_999);
  assert.deepEqual(
    out.filter(([n]) => n.startsWith('webhook-')),
    [
      ['webhook-id', 'msg_p5jXN8AQM9LWM0D4loKWxJek'],
      ['webhook-timestamp', '1614265330'],
      ['webhook-signature', 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='],
    ],
  );
});

test('appHeaders: without a signingSecret, a provider’s own webhook-* headers pass through', () => {
  const headers: HeaderPair[] = [
    ['webhook-id', 'msg_provider'],
    ['webhook-timestamp', '1614265330'],
    ['webhook-signature', 'v1,provider'],
  ];
  const out = appHeaders(GH, frame({ headers }), NOW);
  assert.deepEqual(
    out.filter(([n]) => n.startsWith('webhook-')),
    headers,
  );
});

// ---- Deliverer against real sockets --------------------------------------------------------

async function app(t: TestContext, respond?: Responder): Promise<TestApp> {
  const a = await startApp(respond);
  t.after(() => a.close());
  return a;
}

function deliverer(t: TestContext): Deliverer {
  const d = new Deliverer();
  t.after(() => d.close());
  return d;
}

test('2xx: delivered, with the request exactly as the route and frame say', async (t) => {
  const a = await app(t, (_req, res) => {
    res.statusCode = 204;
    res.end();
  });
  const r = route(`${a.url}/hooks/github`, { signingSecret: SECRET });
  const f = frame({
    path: '/push',
    query: 'a=1&a=2',
    headers: [
      ['Content-Type', 'application/octet-stream'],
      ['X-GitHub-Event', 'push'],
    ],
  });
  const ack = await deliverer(t).deliver(r, f, () => NOW);
  assert.equal(ack.type, 'ack');
  assert.equal(ack.eventId, f.eventId);
  assert.equal(ack.outcome, 'delivered');
  assert.equal(ack.status, 204);
  assert.equal(ack.error, undefined);
  assert.equal(ack.retryAfterMs, undefined);
  assert.ok(Number.isInteger(ack.durationMs) && ack.durationMs >= 0);

  assert.equal(a.received.length, 1);
  const got = a.received[0]!;
  assert.equal(got.method, 'POST');
  assert.equal(got.url, '/hooks/github/push?a=1&a=2');
  assert.deepEqual(got.body, BODY);
  assert.equal(got.headers['host'], new URL(a.url).host);
  assert.equal(got.headers['content-type'], 'application/octet-stream');
  assert.equal(got.headers['x-github-event'], 'push');
  assert.equal(got.headers['x-postern-event-id'], f.eventId);
  assert.equal(got.headers['x-postern-attempt'], '2');
  assert.equal(got.headers['content-length'], String(BODY.length));
  assert.equal(got.headers['webhook-id'], f.eventId);
  assert.equal(got.headers['webhook-timestamp'], String(Math.floor(NOW / 1000)));
  const key = Buffer.from(SECRET.slice(6), 'base64');
  const mac = createHmac('sha256', key)
    .update(`${f.eventId}.${Math.floor(NOW / 1000)}.`)
    .update(got.body)
    .digest('base64');
  assert.equal(got.headers['webhook-signature'], `v1,${mac}`);
});

test('a GET without a body is sent without one', async (t) => {
  const a = await app(t);
  const ack = await deliverer(t).deliver(
    route(`${a.url}/x`),
    frame({ method: 'GET', body: Buffer.alloc(0) }),
  );
  assert.equal(ack.outcome, 'delivered');
  assert.equal(ack.status, 200);
  assert.equal(a.received[0]?.method, 'GET');
  assert.equal(a.received[0]?.body.length, 0);
});

test('500: failed, with the status', async (t) => {
  const a = await app(t, (_req, res) => {
    res.statusCode = 500;
    res.end('boom');
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 500);
  assert.equal(ack.error, 'app answered 500');
  assert.equal(ack.retryAfterMs, undefined);
  assert.equal(a.received.length, 1);
});

test('302: failed, and the redirect is not followed', async (t) => {
  const elsewhere = await app(t);
  const a = await app(t, (_req, res) => {
    res.statusCode = 302;
    res.setHeader('Location', `${elsewhere.url}/internal-admin`);
    res.end();
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 302);
  assert.match(ack.error ?? '', /redirect/);
  assert.equal(a.received.length, 1);
  assert.equal(elsewhere.received.length, 0);
});

test('503 with Retry-After: 7 gives retryAfterMs 7000', async (t) => {
  const a = await app(t, (_req, res) => {
    res.statusCode = 503;
    res.setHeader('Retry-After', '7');
    res.end();
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 503);
  assert.equal(ack.retryAfterMs, 7_000);
});

test('429 with an HTTP-date Retry-After is measured from the injected clock', async (t) => {
  const a = await app(t, (_req, res) => {
    res.statusCode = 429;
    res.setHeader('Retry-After', 'Wed, 21 Oct 2015 07:28:30 GMT');
    res.end();
  });
  const now = () => Date.UTC(2015, 9, 21, 7, 28, 0);
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame(), now);
  assert.equal(ack.status, 429);
  assert.equal(ack.retryAfterMs, 30_000);
});

test('a refused connection: failed, with an error that says so', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
  const ack = await deliverer(t).deliver(route(`http://127.0.0.1:${port}/hooks`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, undefined);
  assert.match(ack.error ?? '', /refused/);
});

test('an app slower than timeoutMs: failed, with a timeout error', async (t) => {
  // Never answers; closed (with its connections) after the test.
  const a = await app(t, () => {});
  const started = Date.now();
  const ack = await deliverer(t).deliver(route(`${a.url}/slow`, { timeoutMs: 200 }), frame());
  const took = Date.now() - started;
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, undefined);
  assert.equal(ack.error, 'app did not answer within 200 ms');
  assert.ok(took >= 190 && took < 5_000, `took ${took} ms`);
  assert.equal(a.received.length, 1);
});

test('an answer whose body stalls past timeoutMs: failed, with its status and what came of it', async (t) => {
  // Sends its status, headers and 7 bytes, then nothing; closed after the test.
  const a = await app(t, (_req, res) => {
    res.writeHead(502, { 'content-type': 'text/plain', 'x-upstream': 'db' });
    res.write('partial');
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/stall`, { timeoutMs: 200 }), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 502);
  assert.equal(ack.error, "app's answer (502) did not finish within 200 ms (7 body bytes read)");
  assert.equal(Buffer.from(ack.body ?? []).toString(), 'partial');
  assert.equal(ack.response?.bodyBytes, 7);
  assert.equal(ack.response?.truncated, true, 'the body did not finish');
  assert.deepEqual(
    ack.response?.headers.filter(([n]) => n === 'x-upstream'),
    [['x-upstream', 'db']],
  );
  const quiet = await deliverer(t).deliver(
    route(`${a.url}/stall`, { timeoutMs: 200, recordAnswer: false }),
    frame(),
  );
  assert.equal(quiet.status, 502);
  assert.equal(quiet.response, undefined);
  assert.equal(quiet.body, undefined);
});

test('an answer cut by the app closing its connection: failed, with its status and the bytes read', async (t) => {
  const a = await app(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('only ten b', () => res.socket?.destroy());
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/cut`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 200);
  assert.match(ack.error ?? '', /^app's answer \(200\) broke off after 10 body bytes: /);
  assert.equal(Buffer.from(ack.body ?? []).toString(), 'only ten b');
  assert.equal(ack.response?.truncated, true);
});

test('a path suffix that leaves the target is not sent at all', async (t) => {
  const a = await app(t);
  const ack = await deliverer(t).deliver(
    route(`${a.url}/hooks/github`),
    frame({ path: '/../../admin' }),
  );
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.error, 'path suffix leaves the route target; not sent');
  assert.equal(a.received.length, 0);
});

const TWIML = Buffer.from([0x3c, 0x52, 0xff, 0x00]);
const twiml: Responder = (_req, res) => {
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/xml');
  res.setHeader('X-App', 'yes');
  res.end(TWIML);
};

test('wantResponse on a route without sync: no response for the provider, only the attempt’s record', async (t) => {
  const a = await app(t, twiml);
  const ack = await deliverer(t).deliver(route(`${a.url}/twiml`), frame({ wantResponse: true }));
  assert.equal(ack.outcome, 'delivered');
  assert.equal(ack.status, 200);
  assert.equal(ack.responseHeaders, undefined);
  assert.deepEqual(ack.body, TWIML);
  assert.equal(ack.response?.bodyBytes, TWIML.length);
  assert.equal(a.received.length, 1);
});

test('recordAnswer: false with wantResponse and no sync: the status only, never headers or body', async (t) => {
  const a = await app(t, twiml);
  const ack = await deliverer(t).deliver(
    route(`${a.url}/twiml`, { recordAnswer: false }),
    frame({ wantResponse: true }),
  );
  assert.equal(ack.outcome, 'delivered');
  assert.equal(ack.status, 200);
  assert.equal(ack.body, undefined);
  assert.equal(ack.responseHeaders, undefined);
  assert.equal(ack.response, undefined);
  assert.equal(a.received.length, 1);
});

// ---- the app's answer kept with the attempt -------------------------------------------------

const LONG_ANSWER = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));

test('a failed attempt keeps the app’s headers (cookies redacted) and the first 2048 bytes of its body', async (t) => {
  const a = await app(t, (_req, res) => {
    res.statusCode = 500;
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('X-Request-Id', 'req-42');
    res.setHeader('Set-Cookie', ['session=secret-value; HttpOnly', 'b=2']);
    res.end(LONG_ANSWER);
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame());
  assert.equal(ack.outcome, 'failed');
  assert.equal(ack.status, 500);
  assert.equal(ack.error, 'app answered 500');
  assert.equal(ack.responseHeaders, undefined);
  assert.deepEqual(ack.body, LONG_ANSWER.subarray(0, 2048));
  const response = ack.response!;
  assert.equal(response.bodyBytes, 5000);
  assert.equal(response.truncated, true);
  const get = (name: string) => response.headers.filter(([n]) => n === name).map(([, v]) => v);
  assert.deepEqual(get('x-request-id'), ['req-42']);
  assert.deepEqual(get('content-type'), ['application/octet-stream']);
  assert.deepEqual(get('set-cookie'), ['[redacted]', '[redacted]']);
  assert.equal(JSON.stringify(response).includes('secret-value'), false);
  assert.deepEqual(get('connection'), []);
  assert.deepEqual(get('keep-alive'), []);
});

test('a short answer is kept whole and not marked truncated; an empty one has no body', async (t) => {
  const a = await app(t, (req, res) => {
    res.statusCode = req.url === '/empty' ? 204 : 422;
    res.end(req.url === '/empty' ? undefined : '{"error":"bad"}');
  });
  const d = deliverer(t);
  const short = await d.deliver(route(`${a.url}/short`), frame());
  assert.equal(short.status, 422);
  assert.equal(Buffer.from(short.body!).toString(), '{"error":"bad"}');
  assert.equal(short.response?.bodyBytes, 15);
  assert.equal(short.response?.truncated, false);
  const empty = await d.deliver(route(`${a.url}/empty`), frame());
  assert.equal(empty.outcome, 'delivered');
  assert.equal(empty.body?.length, 0);
  assert.equal(empty.response?.bodyBytes, 0);
  assert.equal(empty.response?.truncated, false);
});

test('response headers past 8192 bytes are left out, in order, and the answer says truncated', async (t) => {
  const a = await app(t, (_req, res) => {
    for (let i = 0; i < 12; i++)
      res.setHeader(`x-big-${String(i).padStart(2, '0')}`, 'v'.repeat(1000));
    res.end('ok');
  });
  const ack = await deliverer(t).deliver(route(`${a.url}/hooks`), frame());
  const response = ack.response!;
  const big = response.headers.filter(([n]) => n.startsWith('x-big-')).map(([n]) => n);
  // Each pair takes 8 + 1000 + 4 bytes: the first 8 fit (8096 bytes), in the order sent.
  assert.equal(big.length, 8);
  assert.deepEqual(
    big,
    Array.from({ length: big.length }, (_, i) => `x-big-${String(i).padStart(2, '0')}`),
  );
  const bytes = response.headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
  assert.ok(bytes <= 8192, `${bytes} bytes`);
  assert.equal(response.truncated, true);
  assert.equal(response.bodyBytes, 2);
});

test('on a sync route the ack carries the whole body once, and the answer counts it', async (t) => {
  const a = await app(t, (_req, res) => void res.end(LONG_ANSWER));
  const ack = await deliverer(t).deliver(
    route(`${a.url}/hooks`, { sync: true }),
    frame({ wantResponse: true }),
  );
  assert.deepEqual(ack.body, LONG_ANSWER);
  assert.ok(ack.responseHeaders);
  assert.equal(ack.response?.bodyBytes, LONG_ANSWER.length);
  assert.equal(ack.response?.truncated, true);
});

test('wantResponse on a sync route: the app’s status, headers (hop-by-hop removed) and body come back', async (t) => {
  const reply = TWIML;
  const a = await app(t, twiml);
  const ack = await deliverer(t).deliver(
    route(`${a.url}/twiml`, { sync: true }),
    frame({ wantResponse: true }),
  );
  assert.equal(ack.outcome, 'delivered');
  assert.equal(ack.status, 200);
  assert.deepEqual(ack.body, reply);
  const names = (ack.responseHeaders ?? []).map(([n]) => n);
  assert.ok(names.includes('content-type'));
  assert.ok(names.includes('x-app'));
  assert.equal(names.includes('connection'), false);
  assert.equal(names.includes('keep-alive'), false);
  assert.deepEqual(
    (ack.responseHeaders ?? []).filter(([n]) => n === 'x-app'),
    [['x-app', 'yes']],
  );
});

test('keep-alive: several deliveries to one app all arrive', async (t) => {
  const a = await app(t);
  const d = deliverer(t);
  const r = route(`${a.url}/hooks`);
  const acks = await Promise.all(
    Array.from({ length: 20 }, (_, i) => d.deliver(r, frame({ eventId: `evt_${i}` }))),
  );
  assert.equal(acks.filter((k) => k.outcome === 'delivered').length, 20);
  assert.equal(a.received.length, 20);
  assert.deepEqual(
    new Set(a.received.map((x) => x.headers['x-postern-event-id'])),
    new Set(Array.from({ length: 20 }, (_, i) => `evt_${i}`)),
  );
});
