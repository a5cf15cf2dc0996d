/**
 * No other spelling of a path reaches a route of the relay. Every route the relay's routers hold
 * (read from the relay's own `http routes` log line, so that a new one cannot be forgotten) is
 * requested, with its own method, under every variant of its path: other cases, a trailing
 * slash, `//`, `%`-escapes, `;x`, `/./`, `/../`, a trailing dot, a backslash, absolute-form, and
 * mixes of them. Without the token each is 401 or 404; with it, 404; the variants carry real ids
 * and valid bodies, so a variant that reached a handler would answer otherwise or change state,
 * and nothing changed. The canonical path still answers as usual, and `/tunnel` and ingress hold
 * too.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { after, before } from 'node:test';
import { removeDir, pairAgent, startRelay, type RelayHandle } from '../helpers/processes.ts';
import { loadIdentity, mint, type TestIdentity } from '../helpers/tokens.ts';
import { errorCode, need, rawHttp, requestText, type RawResponse } from './support.ts';
import { test } from '../helpers/store.ts';

let relay: RelayHandle | undefined;
let tunnelAgent: TestIdentity | undefined;
const dirs: string[] = [];
const sockets: Socket[] = [];

/** Real ids and a valid body for each route, so that reaching a handler would show. */
const ids = { alpha: '', beta: '', agent: '', code: '', event: '', asset: '' };
const publicKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });

interface Route {
  method: string;
  path: string;
}

interface Probe {
  /** The path with real ids, for the variants. */
  path: string;
  /** A body the handler would take (acting on it). */
  body?: unknown;
  /** The canonical request with the token: harmless input, and its usual answer. */
  canonical: { path: string; body?: unknown; status: number; code?: string; message?: string };
}

/** One probe per route the relay holds; the first test checks both lists are the same. */
function probes(): Map<string, Probe> {
  const { alpha, beta, agent, code, event, asset } = ids;
  const noChannel = { status: 404, code: 'ERR_NOT_FOUND', message: 'no such channel' };
  const noAgent = { status: 404, code: 'ERR_NOT_FOUND', message: 'no such agent' };
  const bad = { status: 400, code: 'ERR_BAD_REQUEST' };
  return new Map<string, Probe>([
    ['GET /healthz', { path: '/healthz', canonical: { path: '/healthz', status: 200 } }],
    ['GET /readyz', { path: '/readyz', canonical: { path: '/readyz', status: 200 } }],
    ['GET /metrics', { path: '/metrics', canonical: { path: '/metrics', status: 200 } }],
    [
      'POST /api/pair',
      {
        path: '/api/pair',
        body: { code, publicKey },
        canonical: {
          path: '/api/pair',
          body: { code: 'AAAA-BBBB-CCCC', publicKey },
          status: 401,
          code: 'ERR_PAIRING_CODE',
        },
      },
    ],
    [
      'POST /api/channels',
      {
        path: '/api/channels',
        body: { name: 'made-by-a-variant' },
        canonical: { path: '/api/channels', body: {}, ...bad },
      },
    ],
    [
      'GET /api/channels',
      { path: '/api/channels', canonical: { path: '/api/channels', status: 200 } },
    ],
    [
      'GET /api/channels/:id',
      {
        path: `/api/channels/${alpha}`,
        canonical: { path: `/api/channels/${alpha}`, status: 200 },
      },
    ],
    [
      'PATCH /api/channels/:id',
      {
        path: `/api/channels/${alpha}`,
        body: { name: 'renamed-by-a-variant' },
        canonical: { path: '/api/channels/ch_none', body: { name: 'x' }, ...noChannel },
      },
    ],
    [
      'DELETE /api/channels/:id',
      { path: `/api/channels/${beta}`, canonical: { path: '/api/channels/ch_none', ...noChannel } },
    ],
    [
      'POST /api/agents',
      {
        path: '/api/agents',
        body: { name: 'made-by-a-variant', channels: ['alpha'] },
        canonical: { path: '/api/agents', body: {}, ...bad },
      },
    ],
    [
      'PATCH /api/agents/:id',
      {
        path: `/api/agents/${agent}`,
        body: { channels: ['alpha', 'beta'] },
        canonical: { path: '/api/agents/ag_none', body: { channels: ['alpha'] }, ...noAgent },
      },
    ],
    [
      'POST /api/agents/:id/pairing-code',
      {
        path: `/api/agents/${agent}/pairing-code`,
        canonical: { path: '/api/agents/ag_none/pairing-code', ...noAgent },
      },
    ],
    ['GET /api/agents', { path: '/api/agents', canonical: { path: '/api/agents', status: 200 } }],
    [
      'DELETE /api/agents/:id',
      { path: `/api/agents/${agent}`, canonical: { path: '/api/agents/ag_none', ...noAgent } },
    ],
    ['GET /api/stream', { path: '/api/stream', canonical: { path: '/api/stream', status: 200 } }],
    [
      'GET /api/openapi.json',
      { path: '/api/openapi.json', canonical: { path: '/api/openapi.json', status: 200 } },
    ],
    [
      'GET /api/stats',
      { path: '/api/stats', canonical: { path: '/api/stats?range=hour', status: 200 } },
    ],
    ['GET /api/events', { path: '/api/events', canonical: { path: '/api/events', status: 200 } }],
    [
      'GET /api/events/:id',
      { path: `/api/events/${event}`, canonical: { path: `/api/events/${event}`, status: 200 } },
    ],
    [
      'POST /api/events/replay',
      {
        path: '/api/events/replay',
        body: { status: 'failed' },
        canonical: { path: '/api/events/replay', body: { status: 'bogus' }, ...bad },
      },
    ],
    [
      'POST /api/events/:id/skip',
      {
        path: `/api/events/${event}/skip`,
        canonical: {
          path: '/api/events/evt_none/skip',
          status: 404,
          code: 'ERR_NOT_FOUND',
          message: 'no event evt_none',
        },
      },
    ],
    [
      'POST /api/events/:id/replay',
      {
        path: `/api/events/${event}/replay`,
        canonical: {
          path: '/api/events/evt_none/replay',
          status: 404,
          code: 'ERR_NOT_FOUND',
          message: 'no event evt_none',
        },
      },
    ],
    ['GET /', { path: '/', canonical: { path: '/', status: 200 } }],
    [
      'GET /assets/:file',
      { path: `/assets/${asset}`, canonical: { path: `/assets/${asset}`, status: 200 } },
    ],
  ]);
}

const hex = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
const swapCase = (s: string) =>
  [...s].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('');

/**
 * Every other spelling of `path` (a canonical path of the route `pattern`), labelled. The case
 * of a parameter (`:id`) is left alone: another case there is another id, not another spelling.
 */
function variants(path: string, pattern: string): [string, string][] {
  if (path === '/') {
    return [
      ['//', '//'],
      ['/.', '/.'],
      ['/./', '/./'],
      ['/..', '/..'],
      ['/../', '/../'],
      ['/;x', '/;x'],
      ['/%2F', '/%2F'],
      ['/%2e', '/%2e'],
      ['backslash', '\\'],
      ['/\\', '/\\'],
      ['absolute-form', 'http://127.0.0.1/'],
      ['///', '///'],
    ];
  }
  const segs = path.slice(1).split('/');
  const join = (parts: string[]) => `/${parts.join('/')}`;
  const out: [string, string][] = [];
  const add = (label: string, target: string) => {
    if (target !== path && !out.some(([, t]) => t === target)) out.push([label, target]);
  };
  add('upper case', path.toUpperCase());
  add('swapped case', swapCase(path));
  const first = segs[0]!;
  add('first capital', join([first[0]!.toUpperCase() + first.slice(1), ...segs.slice(1)]));
  const params = pattern
    .slice(1)
    .split('/')
    .map((p) => p.startsWith(':'));
  segs.forEach((seg, i) => {
    const at = (s: string) => join(segs.map((x, j) => (j === i ? s : x)));
    if (!params[i]) {
      add(`segment ${i} upper`, at(seg.toUpperCase()));
      add(`segment ${i} last capital`, at(seg.slice(0, -1) + seg.slice(-1).toUpperCase()));
    }
    add(`segment ${i} %-escaped first char`, at(hex(seg[0]!) + seg.slice(1)));
    add(`segment ${i} lower-hex escape`, at(hex(seg[0]!).toLowerCase() + seg.slice(1)));
    add(`segment ${i} ;x`, at(`${seg};x`));
    add(`segment ${i} trailing dot`, at(`${seg}.`));
    add(`segment ${i} %2e`, at(`${seg}%2e`));
    add(`/./ before segment ${i}`, join([...segs.slice(0, i), '.', ...segs.slice(i)]));
    add(`/%2e/ before segment ${i}`, join([...segs.slice(0, i), '%2e', ...segs.slice(i)]));
    add(`/x/../ before segment ${i}`, join([...segs.slice(0, i), 'x', '..', ...segs.slice(i)]));
    add(
      `/${seg}/../ before segment ${i}`,
      join([...segs.slice(0, i), seg, '..', ...segs.slice(i)]),
    );
    add(
      `/%2e%2e/ before segment ${i}`,
      join([...segs.slice(0, i), 'x', '%2e%2e', ...segs.slice(i)]),
    );
    add(`// before segment ${i}`, join([...segs.slice(0, i), '', ...segs.slice(i)]));
  });
  for (let i = 1; i < segs.length; i++) {
    const before = join(segs.slice(0, i));
    const rest = segs.slice(i).join('/');
    add(`backslash before segment ${i}`, `${before}\\${rest}`);
    add(`%2F before segment ${i}`, `${before}%2F${rest}`);
    add(`%2f before segment ${i}`, `${before}%2f${rest}`);
    add(`%5C before segment ${i}`, `${before}%5C${rest}`);
  }
  add('trailing slash', `${path}/`);
  add('trailing /.', `${path}/.`);
  add('trailing ;x', `${path};x`);
  add('trailing %20', `${path}%20`);
  add('leading //', `/${path}`);
  add('leading ///', `//${path}`);
  add('absolute-form', `http://127.0.0.1${path}`);
  // Mixes.
  const rest = segs.slice(1);
  const upperFirst = first.toUpperCase();
  add(
    'upper first + // + trailing slash',
    `/${upperFirst}//${rest.join('/')}/`.replace(/\/+$/, '/'),
  );
  add(
    'capital first + /./ + ;x',
    join([first[0]!.toUpperCase() + first.slice(1), '.', ...rest]) + ';x',
  );
  add(
    'leading // + escaped upper first + trailing slash',
    `//${hex(upperFirst[0]!)}${upperFirst.slice(1)}${rest.length ? '/' : ''}${rest.join('/')}/`,
  );
  add('/../ into upper case', join([first, '..', upperFirst, ...rest]));
  add(
    'escaped first ;x // trailing /.',
    `/${hex(first[0]!)}${first.slice(1)};x/${rest.length ? '/' : ''}${rest.join('/')}/.`,
  );
  add('upper case + trailing slash', `${path.toUpperCase()}/`);
  add('swapped case + leading //', `/${swapCase(path)}`);
  return out;
}

/** One request on its own connection, as written (no client normalises the target). */
function send(
  method: string,
  target: string,
  token: string | null,
  body?: unknown,
  timeoutMs = 15_000,
): Promise<RawResponse> {
  const r = need(relay, 'relay');
  const headers = [
    ...(token === null ? [] : [`Authorization: Bearer ${token}`]),
    ...(body === undefined ? [] : ['Content-Type: application/json']),
  ];
  const bytes = requestText(
    method,
    target,
    headers,
    body === undefined ? undefined : JSON.stringify(body),
  );
  return rawHttp(r.url, sockets, (s) => s.write(bytes), timeoutMs);
}

/** The head of an answer that never ends (the event stream), then the connection is closed. */
function sendForHead(target: string, token: string): Promise<string> {
  return headOf([`GET ${target} HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${token}`]);
}

/** Sends a request head by hand and resolves with the head of the answer (or what came). */
function headOf(lines: string[]): Promise<string> {
  const { hostname, port } = new URL(need(relay, 'relay').url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    sockets.push(socket);
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no answer to ${lines[0]}: ${text}`)), 10_000);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(text.slice(0, end));
    });
    socket.on('error', () => {
      // The close decides.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.write([...lines, '', ''].join('\r\n'));
  });
}

interface State {
  channels: unknown;
  agents: unknown;
  events: unknown;
}

async function snapshot(): Promise<State> {
  const r = need(relay, 'relay');
  return {
    channels: await r.api('GET', '/api/channels'),
    agents: await r.api('GET', '/api/agents'),
    events: await r.api('GET', '/api/events?limit=500'),
  };
}

before(async () => {
  relay = await startRelay();
  const r = relay;
  ids.alpha = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'alpha' })).id;
  ids.beta = (await r.api<{ id: string }>('POST', '/api/channels', { name: 'beta' })).id;
  const added = await r.api<{ id: string; pairingCode: string }>('POST', '/api/agents', {
    name: 'waiting',
    channels: ['alpha'],
  });
  ids.agent = added.id;
  ids.code = added.pairingCode;
  // Queued for ever: no agent of `alpha` ever connects.
  const res = await fetch(`${r.url}/h/${ids.alpha}/one`, { method: 'POST', body: 'one' });
  assert.equal(res.status, 202);
  ids.event = ((await res.json()) as { id: string }).id;
  const page = await (await fetch(`${r.url}/`)).text();
  ids.asset = need(/href="assets\/([^"]+\.css)"/.exec(page)?.[1], 'the stylesheet in the page');
  const paired = await pairAgent(r, ['beta'], 'tunnel');
  dirs.push(paired.stateDir);
  tunnelAgent = await loadIdentity(paired.stateDir);
});

after(async () => {
  for (const s of sockets) s.destroy();
  await relay?.stop();
  if (relay) dirs.push(relay.dataDir);
  for (const d of dirs) await removeDir(d);
});

/** The routes the relay listed in its `http routes` log line at start. */
async function listedRoutes(): Promise<Route[]> {
  const line = await need(relay, 'relay').proc.waitForMsg('http routes');
  const listed: unknown = line['routes'];
  assert.ok(Array.isArray(listed), 'the log line lists routes');
  return listed.map((x: unknown) => {
    assert.ok(
      typeof x === 'object' && x !== null && 'method' in x && 'path' in x,
      JSON.stringify(x),
    );
    return { method: String(x.method), path: String(x.path) };
  });
}

test('the relay lists its routes, and each has a probe here', async () => {
  const routes = await listedRoutes();
  assert.deepEqual(
    routes.map((x) => `${x.method} ${x.path}`).sort(),
    [...probes().keys()].sort(),
    'a route without a probe here (add one), or a probe for a route that is gone',
  );
  assert.equal(routes.length, 24);
});

test('every variant of every route: 401 or 404 without the token, 404 with it, nothing changed', async () => {
  const r = need(relay, 'relay');
  const routes = await listedRoutes();
  assert.equal(routes.length, 24);
  const before = await snapshot();
  const table = probes();
  const wrong: string[] = [];
  let sent = 0;
  let variantCount = 0;
  const jobs: (() => Promise<void>)[] = [];
  for (const route of routes) {
    const probe = need(table.get(`${route.method} ${route.path}`), route.path);
    const list = variants(probe.path, route.path);
    variantCount += list.length;
    for (const [label, target] of list) {
      for (const token of [null, r.token]) {
        jobs.push(async () => {
          const who = `${route.method} ${target} (${label}, ${token ? 'token' : 'no token'})`;
          let res: RawResponse;
          try {
            // An answer that does not end within 5 s is a stream: the variant reached one.
            res = await send(route.method, target, token, probe.body, 5_000);
          } catch (err) {
            wrong.push(`${who}: ${String(err).slice(0, 120)}`);
            return;
          } finally {
            sent++;
          }
          const code = errorCode(res.body);
          // A target that is not even origin-form is refused by Node's HTTP parser (400, no body).
          const ok =
            !target.startsWith('/') && !target.startsWith('http://')
              ? res.status === 400 && res.body === ''
              : token === null
                ? (res.status === 401 && code === 'ERR_UNAUTHORIZED') ||
                  (res.status === 404 && code === 'ERR_NOT_FOUND')
                : res.status === 404 && code === 'ERR_NOT_FOUND';
          // A 404 from a handler would name the thing it did not find; the router's does not.
          const message = /"message":"([^"]*)"/.exec(res.body)?.[1];
          if (!ok || (res.status === 404 && message !== 'not found')) {
            wrong.push(`${who}: ${res.status} ${res.body.slice(0, 100)}`);
          }
        });
      }
    }
  }
  // Eight at a time: each on its own connection, closed after the answer.
  const queue = [...jobs];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let job = queue.shift(); job; job = queue.shift()) await job();
    }),
  );
  assert.deepEqual(wrong, []);
  assert.equal(sent, jobs.length);
  console.log(`${routes.length} routes, ${variantCount} variants, ${sent} requests: all refused`);
  assert.deepEqual(await snapshot(), before, 'channels, agents and events unchanged');
});

test('ingress and /tunnel under other spellings reach nothing', async () => {
  const r = need(relay, 'relay');
  const before = await snapshot();
  const wrong: string[] = [];
  const ingress = [
    `/H/${ids.alpha}/x`,
    `//h/${ids.alpha}/x`,
    `/%68/${ids.alpha}/x`,
    `/h;x/${ids.alpha}/x`,
    `/./h/${ids.alpha}/x`,
    `/x/../h/${ids.alpha}/x`,
    `http://127.0.0.1/h/${ids.alpha}/x`,
    `/h\\${ids.alpha}/x`,
  ];
  for (const target of ingress) {
    for (const token of [null, r.token]) {
      const res = await send('POST', target, token, { hello: 'variant' });
      if (res.status !== 404 || errorCode(res.body) !== 'ERR_NOT_FOUND') {
        wrong.push(`POST ${target}: ${res.status} ${res.body.slice(0, 100)}`);
      }
    }
  }
  const tunnel = [
    '/TUNNEL',
    '/Tunnel',
    '/tunnel/',
    '//tunnel',
    '/%74unnel',
    '/tunnel;x',
    '/./tunnel',
    '/x/../tunnel',
    '/tunnel.',
    'http://127.0.0.1/tunnel',
  ];
  for (const target of tunnel) {
    // With a valid agent token each time: only the path can refuse it.
    const token = await mint(need(tunnelAgent, 'tunnel agent'));
    const head = await upgradeHead(target, token);
    if (!head.startsWith('HTTP/1.1 404 '))
      wrong.push(`upgrade ${target}: ${head.split('\r\n')[0]}`);
  }
  assert.deepEqual(wrong, []);
  const token = await mint(need(tunnelAgent, 'tunnel agent'));
  assert.match(await upgradeHead('/tunnel', token), /^HTTP\/1\.1 101 /, 'the canonical upgrade');
  assert.deepEqual(await snapshot(), before, 'no event stored, nothing changed');
});

/** Sends a WebSocket upgrade to `target` by hand and returns the head of the answer. */
function upgradeHead(target: string, token: string): Promise<string> {
  return headOf([
    `GET ${target} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    `Authorization: Bearer ${token}`,
  ]);
}

test('the canonical path of every route answers as usual; without the token, 401', async () => {
  const r = need(relay, 'relay');
  const routes = await listedRoutes();
  assert.equal(routes.length, 24);
  const table = probes();
  const got: string[] = [];
  const want: string[] = [];
  for (const route of routes) {
    const probe = need(table.get(`${route.method} ${route.path}`), route.path);
    const c = probe.canonical;
    const label = `${route.method} ${c.path}`;
    const open = route.path === '/api/pair' || !/^\/(api|metrics)(\/|$)/.test(route.path);
    // Without the token: the open routes answer as usual, the others 401.
    if (route.path === '/api/stream') {
      got.push(`${label}: ${(await sendForHead(c.path, r.token)).split('\r\n')[0]}`);
      want.push(`${label}: HTTP/1.1 200 OK`);
      const bare = await send(route.method, c.path, null);
      got.push(`${label} (no token): ${bare.status} ${errorCode(bare.body)}`);
      want.push(`${label} (no token): 401 ERR_UNAUTHORIZED`);
      continue;
    }
    const res = await send(route.method, c.path, r.token, c.body);
    const message = /"message":"([^"]*)"/.exec(res.body)?.[1];
    got.push(
      `${label}: ${res.status}${c.code ? ` ${errorCode(res.body)}` : ''}${c.message ? ` ${message}` : ''}`,
    );
    want.push(
      `${label}: ${c.status}${c.code ? ` ${c.code}` : ''}${c.message ? ` ${c.message}` : ''}`,
    );
    if (!open) {
      const bare = await send(route.method, c.path, null, c.body);
      got.push(`${label} (no token): ${bare.status} ${errorCode(bare.body)}`);
      want.push(`${label} (no token): 401 ERR_UNAUTHORIZED`);
    }
  }
  assert.deepEqual(got, want);

  // The body the variants carried was good: the canonical path takes it and pairs the agent.
  const paired = await send('POST', '/api/pair', null, { code: ids.code, publicKey });
  assert.equal(paired.status, 200, paired.body);
  const { agents } = await r.api<{ agents: { id: string; paired: boolean }[] }>(
    'GET',
    '/api/agents',
  );
  assert.equal(agents.find((a) => a.id === ids.agent)?.paired, true);
});
