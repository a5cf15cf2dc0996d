/**
 * Oversized and hostile requests are refused without harm: request heads over 16 KiB, admin
 * bodies over 1 MiB, bodies that are not a JSON object, bad channel names, unknown channel
 * fields, out-of-range query parameters, and ingress paths that try to climb into the admin
 * API. Each is refused with the documented status and changes nothing; afterwards the relay
 * still serves and a real agent still delivers.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before } from 'node:test';
import { request, type Dispatcher } from 'undici';
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
import {
  errorCode,
  head,
  healthz,
  idFrom,
  listChannels,
  listEvents,
  need,
  rawHttp,
  requestText,
  type ChannelView,
  type EventDetail,
  type EventView,
  type RawResponse,
} from './support.ts';
import { test } from '../helpers/store.ts';

const MAX_HEADER = 16 * 1024;
const MAX_JSON = 1024 * 1024;

let relay: RelayHandle | undefined;
let app: TestApp | undefined;
let agent: AgentHandle | undefined;
const channels = new Map<string, string>();
const dirs: string[] = [];
const sockets: Socket[] = [];

before(async () => {
  app = await startApp();
  relay = await startRelay();
  for (const [name, extra] of [
    ['limits', {}],
    // One attempt, no retries: a delivery the agent refuses ends `failed` at once.
    ['trav', { retry: { delaysMs: [] } }],
    ['victim', {}],
  ] as const) {
    const c = await relay.api<ChannelView>('POST', '/api/channels', { name, ...extra });
    channels.set(name, c.id);
  }
  const paired = await pairAgent(relay, ['limits', 'trav'], 'limits-agent');
  dirs.push(paired.stateDir);
  agent = await startAgent(paired.stateDir, [
    { channel: 'limits', target: `${app.url}/hooks/limits` },
    { channel: 'trav', target: `${app.url}/hooks/trav` },
  ]);
});

after(async () => {
  for (const s of sockets) s.destroy();
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  if (relay) dirs.push(relay.dataDir);
  for (const d of dirs) await removeDir(d);
});

function ch(name: string): string {
  return need(channels.get(name), `channel ${name}`);
}

function r(): RelayHandle {
  return need(relay, 'relay');
}

const auth = (): string => `Authorization: Bearer ${r().token}`;

function send(bytes: Buffer | string): Promise<RawResponse> {
  return rawHttp(r().url, sockets, (s) => s.write(bytes));
}

/** What must not change when a request is refused. */
async function snapshot(): Promise<{ channels: ChannelView[]; events: EventView[]; app: number }> {
  return {
    channels: await listChannels(r()),
    events: await listEvents(r()),
    app: need(app, 'app').received.length,
  };
}

async function expectUnchanged(
  before: Awaited<ReturnType<typeof snapshot>>,
  what: string,
): Promise<void> {
  const now = await snapshot();
  assert.deepEqual(now.channels, before.channels, `${what}: channels unchanged`);
  assert.deepEqual(
    now.events.map((e) => e.id),
    before.events.map((e) => e.id),
    `${what}: no event stored`,
  );
  assert.equal(now.app, before.app, `${what}: nothing reached the app`);
}

/** Calls the admin API with a raw body and `Content-Type: application/json`. */
async function adminCall(
  method: Dispatcher.HttpMethod,
  urlPath: string,
  body: string | Buffer,
): Promise<{ status: number; text: string }> {
  const res = await request(`${r().url}${urlPath}`, {
    method,
    headers: { authorization: `Bearer ${r().token}`, 'content-type': 'application/json' },
    body,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

// ---- request heads over 16 KiB -----------------------------------------------------------------

test('request heads over 16 KiB get 431 (or a closed connection) and store nothing', async () => {
  const before = await snapshot();
  const body = '{"big":"headers"}';
  const many = Array.from({ length: 400 }, (_, i) => `X-Filler-${i}: ${'f'.repeat(40)}`);
  assert.ok(many.join('\r\n').length > MAX_HEADER);
  const cases: [string, Buffer][] = [
    [
      'one 17 KiB header on ingress',
      requestText('POST', `/h/${ch('limits')}`, [`X-Big: ${'a'.repeat(17 * 1024)}`], body),
    ],
    [
      'one 64 KiB header on ingress',
      requestText('POST', `/h/${ch('limits')}`, [`X-Big: ${'a'.repeat(64 * 1024)}`], body),
    ],
    [
      '400 headers, 20 KiB in all, on ingress',
      requestText('POST', `/h/${ch('limits')}`, many, body),
    ],
    [
      'a 17 KiB request target on ingress',
      requestText('POST', `/h/${ch('limits')}/${'p'.repeat(17 * 1024)}`, [], body),
    ],
    [
      'a 17 KiB header on POST /api/channels with the admin token',
      requestText(
        'POST',
        '/api/channels',
        [auth(), 'Content-Type: application/json', `X-Big: ${'a'.repeat(17 * 1024)}`],
        JSON.stringify({ name: 'big-header' }),
      ),
    ],
    [
      'a 17 KiB Authorization header on GET /api/channels',
      requestText('GET', '/api/channels', [`Authorization: Bearer ${'t'.repeat(17 * 1024)}`]),
    ],
  ];
  const outcomes: string[] = [];
  for (const [what, bytes] of cases) {
    const res = await send(bytes);
    const ok = res.status === 431 || (res.status === 0 && res.closed);
    outcomes.push(`${what}: ${ok ? '431 or closed' : `${res.status} ${res.body.slice(0, 100)}`}`);
    if (res.status === 431) assert.ok(res.closed, `${what}: the connection is closed after 431`);
  }
  assert.deepEqual(
    outcomes,
    cases.map(([what]) => `${what}: 431 or closed`),
  );
  await expectUnchanged(before, 'oversized heads');
  assert.equal(await healthz(r().url), 200);

  // Control: a 12 KiB header is under the limit, accepted, and reaches the app unchanged.
  const big = 'c'.repeat(12 * 1024);
  const ok = await send(requestText('POST', `/h/${ch('limits')}/control`, [`X-Big: ${big}`], body));
  assert.equal(ok.status, 202, `${ok.head}\n${ok.body}`);
  const id = idFrom(ok.body);
  const got = await eventually(
    () => need(app, 'app').received.find((x) => x.headers['x-postern-event-id'] === id),
    30_000,
    'the control webhook at the app',
  );
  assert.equal(got.headers['x-big'], big);
});

// ---- admin bodies over 1 MiB -------------------------------------------------------------------

test('an admin JSON body over 1 MiB gets 413 ERR_BODY_TOO_LARGE; exactly 1 MiB is read and judged', async () => {
  const before = await snapshot();
  const id = ch('victim');
  const endpoints: [Dispatcher.HttpMethod, string][] = [
    ['POST', '/api/channels'],
    ['PATCH', `/api/channels/${id}`],
    ['POST', '/api/agents'],
  ];
  /** A JSON object of exactly `size` bytes: a name plus padding in an unknown field. */
  const json = (size: number): string => {
    const shell = JSON.stringify({ name: 'padded', pad: '' });
    return JSON.stringify({ name: 'padded', pad: 'x'.repeat(size - shell.length) });
  };
  assert.equal(json(MAX_JSON).length, MAX_JSON);
  const outcomes: string[] = [];
  for (const [method, p] of endpoints) {
    // Declared too large: answered from Content-Length alone, before any body byte is sent.
    const declared = await send(
      head(method, p, [
        auth(),
        'Content-Type: application/json',
        `Content-Length: ${MAX_JSON + 1}`,
      ]),
    );
    outcomes.push(`${method} ${p} declared: ${declared.status} ${errorCode(declared.body)}`);
    // Sent in full, one byte over.
    const full = await send(
      requestText(method, p, [auth(), 'Content-Type: application/json'], json(MAX_JSON + 1)),
    );
    outcomes.push(`${method} ${p} sent: ${full.status} ${errorCode(full.body)}`);
    // Streamed with no length: counted while it arrives (1.5 MiB, never finished).
    const streamed = await rawHttp(r().url, sockets, (s) => {
      s.write(
        head(method, p, [auth(), 'Content-Type: application/json', 'Transfer-Encoding: chunked']),
      );
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let i = 0; i < 24; i++) {
        s.write(`${chunk.length.toString(16)}\r\n`);
        s.write(chunk);
        s.write('\r\n');
      }
    });
    outcomes.push(`${method} ${p} streamed: ${streamed.status} ${errorCode(streamed.body)}`);
    // Exactly 1 MiB: read in full, then refused for what it says (the unknown field).
    const exact = await adminCall(method, p, json(MAX_JSON));
    outcomes.push(`${method} ${p} exactly 1 MiB: ${exact.status} ${errorCode(exact.text)}`);
  }
  assert.deepEqual(
    outcomes,
    endpoints.flatMap(([method, p]) => [
      `${method} ${p} declared: 413 ERR_BODY_TOO_LARGE`,
      `${method} ${p} sent: 413 ERR_BODY_TOO_LARGE`,
      `${method} ${p} streamed: 413 ERR_BODY_TOO_LARGE`,
      `${method} ${p} exactly 1 MiB: 400 ERR_BAD_REQUEST`,
    ]),
  );
  // POST /api/pair needs no token; one request of each kind keeps well inside its rate limit.
  const pair = await send(
    head('POST', '/api/pair', [
      'Content-Type: application/json',
      `Content-Length: ${MAX_JSON + 1}`,
    ]),
  );
  assert.equal(pair.status, 413, `${pair.head}\n${pair.body}`);
  assert.equal(errorCode(pair.body), 'ERR_BODY_TOO_LARGE');
  await expectUnchanged(before, 'oversized bodies');
  const agents = await r().api<{ agents: { name: string }[] }>('GET', '/api/agents');
  assert.deepEqual(
    agents.agents.map((a) => a.name),
    ['limits-agent'],
    'no agent was added',
  );
  assert.equal(await healthz(r().url), 200);
});

// ---- bodies that are not a JSON object ---------------------------------------------------------

test('a body that is not JSON, or not a JSON object, gets 400 ERR_BAD_REQUEST', async () => {
  const before = await snapshot();
  const bodies: [string, string | Buffer][] = [
    ['plain text', 'name=sneaky'],
    ['truncated JSON', '{"name":"sneaky"'],
    ['JSON then garbage', '{"name":"sneaky"}x'],
    ['two JSON objects', '{"name":"a"}{"name":"b"}'],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ['an array', '[{"name":"sneaky"}]'],
    ['a string', '"sneaky"'],
    ['a number', '42'],
    ['null', 'null'],
    ['true', 'true'],
  ];
  const endpoints: [Dispatcher.HttpMethod, string][] = [
    ['POST', '/api/channels'],
    ['PATCH', `/api/channels/${ch('victim')}`],
    ['POST', '/api/agents'],
  ];
  const outcomes: string[] = [];
  for (const [method, p] of endpoints) {
    for (const [what, body] of bodies) {
      const res = await adminCall(method, p, body);
      outcomes.push(`${method} ${p}, ${what}: ${res.status} ${errorCode(res.text)}`);
    }
  }
  // And the pairing endpoint (no token; 2 requests, within its rate limit).
  for (const [what, body] of [bodies[1]!, bodies[5]!]) {
    const res = await request(`${r().url}/api/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    outcomes.push(`POST /api/pair, ${what}: ${res.statusCode} ${errorCode(await res.body.text())}`);
  }
  assert.deepEqual(outcomes, [
    ...endpoints.flatMap(([method, p]) =>
      bodies.map(([what]) => `${method} ${p}, ${what}: 400 ERR_BAD_REQUEST`),
    ),
    `POST /api/pair, ${bodies[1]![0]}: 400 ERR_BAD_REQUEST`,
    `POST /api/pair, ${bodies[5]![0]}: 400 ERR_BAD_REQUEST`,
  ]);
  await expectUnchanged(before, 'bodies that are not an object');
});

// ---- channel names and fields ------------------------------------------------------------------

test('a channel name with characters outside [A-Za-z0-9._-] gets 400, on create and rename', async () => {
  const before = await snapshot();
  const bad = [
    'has space',
    'slash/name',
    'back\\slash',
    'percent%2Fname',
    'semi;colon',
    'quote"name',
    '<script>',
    'tab\tname',
    'new\nline',
    'nul\u0000name',
    'ümlaut',
    'emoji😀',
    'colon:name',
    'question?',
    'hash#name',
    'star*',
    '..',
    '.hidden',
    '-dash-first',
    '',
    'n'.repeat(65),
  ];
  const outcomes: string[] = [];
  for (const name of bad) {
    const created = await adminCall('POST', '/api/channels', JSON.stringify({ name }));
    const renamed = await adminCall(
      'PATCH',
      `/api/channels/${ch('victim')}`,
      JSON.stringify({ name }),
    );
    outcomes.push(
      `${JSON.stringify(name)}: ${created.status} ${errorCode(created.text)} / ` +
        `${renamed.status} ${errorCode(renamed.text)}`,
    );
  }
  assert.deepEqual(
    outcomes,
    bad.map((name) => `${JSON.stringify(name)}: 400 ERR_BAD_REQUEST / 400 ERR_BAD_REQUEST`),
  );
  await expectUnchanged(before, 'bad names');
  // Control: every allowed character class, 64 characters long, is a good name.
  const good = `Ab9._-${'z'.repeat(58)}`;
  assert.equal(good.length, 64);
  const created = await adminCall('POST', '/api/channels', JSON.stringify({ name: good }));
  assert.equal(created.status, 201, created.text);
  const { id } = JSON.parse(created.text) as { id: string };
  await r().api<undefined>('DELETE', `/api/channels/${id}`);
});

test('unknown channel fields get 400 and change nothing', async () => {
  const before = await snapshot();
  const victim = ch('victim');
  const creates: [string, string][] = [
    ['id chosen by the client', JSON.stringify({ name: 'u1', id: 'ch_chosen_by_me' })],
    ['a top-level secret', JSON.stringify({ name: 'u2', secret: 'x' })],
    ['createdAt', JSON.stringify({ name: 'u3', createdAt: 0 })],
    ['ingressUrl', JSON.stringify({ name: 'u4', ingressUrl: 'http://evil.example/' })],
    ['agents', JSON.stringify({ name: 'u5', agents: ['ag_x'] })],
    ['__proto__', '{"name":"u6","__proto__":{"ordered":true}}'],
    ['constructor', JSON.stringify({ name: 'u7', constructor: { prototype: { x: 1 } } })],
    ['a misspelt field', JSON.stringify({ name: 'u8', maxBodyByte: 10 })],
  ];
  const patches: [string, string][] = [
    ['id', JSON.stringify({ id: 'ch_other' })],
    ['createdAt', JSON.stringify({ createdAt: 0 })],
    ['__proto__', '{"__proto__":{"maxBodyBytes":1}}'],
    ['a valid field plus an unknown one', JSON.stringify({ ordered: true, colour: 'red' })],
    [
      'a valid name, then a bad retry',
      JSON.stringify({ name: 'renamed-victim', retry: { delaysMs: ['soon'] } }),
    ],
  ];
  const outcomes: string[] = [];
  for (const [what, body] of creates) {
    const res = await adminCall('POST', '/api/channels', body);
    outcomes.push(`POST ${what}: ${res.status} ${errorCode(res.text)}`);
  }
  for (const [what, body] of patches) {
    const res = await adminCall('PATCH', `/api/channels/${victim}`, body);
    outcomes.push(`PATCH ${what}: ${res.status} ${errorCode(res.text)}`);
  }
  assert.deepEqual(outcomes, [
    ...creates.map(([what]) => `POST ${what}: 400 ERR_BAD_REQUEST`),
    ...patches.map(([what]) => `PATCH ${what}: 400 ERR_BAD_REQUEST`),
  ]);
  await expectUnchanged(before, 'unknown fields');
  const after = await r().api<ChannelView & { ordered: boolean }>('GET', `/api/channels/${victim}`);
  assert.equal(after.id, victim);
  assert.equal(after.ordered, false, 'a refused PATCH applied none of its fields');
});

// ---- query parameters --------------------------------------------------------------------------

test('GET /api/events with query parameters out of range gets 400', async () => {
  const bad = [
    'limit=0',
    'limit=10000',
    'limit=501',
    'limit=-1',
    'limit=1.5',
    'limit=abc',
    'limit=',
    'limit=1e2x',
    'status=bogus',
    'status=QUEUED',
    'status=',
    'before=evt_not_a_cursor',
  ];
  const outcomes: string[] = [];
  for (const q of bad) {
    const res = await fetch(`${r().url}/api/events?${q}`, {
      headers: { authorization: `Bearer ${r().token}` },
    });
    outcomes.push(`${q}: ${res.status} ${errorCode(await res.text())}`);
  }
  assert.deepEqual(
    outcomes,
    bad.map((q) => `${q}: 400 ERR_BAD_REQUEST`),
  );
  // Controls at the edges of the range.
  for (const q of ['limit=1', 'limit=500', 'status=queued', 'status=delivered&limit=1']) {
    const res = await fetch(`${r().url}/api/events?${q}`, {
      headers: { authorization: `Bearer ${r().token}` },
    });
    const text = await res.text();
    assert.equal(res.status, 200, `${q}: ${text}`);
    const page = JSON.parse(text) as { events: unknown[] };
    assert.ok(Array.isArray(page.events), q);
    if (q.includes('limit=1')) assert.ok(page.events.length <= 1, q);
  }
});

// ---- path traversal from ingress into the admin API --------------------------------------------

test('an ingress path that climbs into /api never reaches the admin API', async () => {
  const before = await snapshot();
  const trav = ch('trav');
  const victim = ch('victim');
  const json = ['Content-Type: application/json'];
  const cases: [string, string, string | undefined][] = [
    ['GET', `/h/${trav}/../../api/channels`, undefined],
    ['GET', `/h/${trav}/%2e%2e/%2e%2e/api/channels`, undefined],
    ['GET', `/h/${trav}/%2E%2E/%2E%2E/api/channels`, undefined],
    ['GET', `/h/${trav}/..%2f..%2fapi%2fchannels`, undefined],
    ['GET', `/h/${trav}/./../.././api/channels?limit=500`, undefined],
    ['POST', `/h/${trav}/../../api/channels`, JSON.stringify({ name: 'pwned' })],
    ['POST', `/h/${trav}/%2e%2e/%2e%2e/api/channels`, JSON.stringify({ name: 'pwned2' })],
    ['DELETE', `/h/${trav}/../../api/channels/${victim}`, undefined],
    ['GET', '/h/../api/channels', undefined],
    ['GET', '/h/%2e%2e/api/channels', undefined],
    ['POST', '/h/../api/channels', JSON.stringify({ name: 'pwned3' })],
  ];
  const outcomes: string[] = [];
  const stored: { id: string; method: string; target: string }[] = [];
  for (const [method, target, body] of cases) {
    // With the admin token, so that reaching the admin API would show (a list, a new or a
    // deleted channel); without it, a 401 ERR_UNAUTHORIZED would show it instead.
    for (const withToken of [true, false]) {
      const headers = [...(withToken ? [auth()] : []), ...(body === undefined ? [] : json)];
      const res = await send(requestText(method, target, headers, body));
      const label = `${method} ${target}${withToken ? ' (token)' : ''}`;
      let verdict: string;
      if (res.status === 404) {
        verdict = 'refused (404)';
      } else if (res.status === 202) {
        const parsed = JSON.parse(res.body) as Record<string, unknown>;
        verdict =
          Object.keys(parsed).join(',') === 'id' && /^evt_/.test(String(parsed['id']))
            ? 'stored as an event'
            : `202 with ${res.body.slice(0, 120)}`;
        if (verdict === 'stored as an event') {
          stored.push({ id: String(parsed['id']), method, target });
        }
      } else {
        verdict = `${res.status} ${res.body.slice(0, 120)}`;
      }
      assert.doesNotMatch(res.body, /"channels"\s*:/, `${label}: not the channel list`);
      outcomes.push(`${label}: ${verdict}`);
    }
  }
  assert.deepEqual(
    outcomes.filter((o) => !/: (refused \(404\)|stored as an event)$/.test(o)),
    [],
    'each is a 404 or an ordinary event of its channel',
  );
  // The ones under /h/../ name no channel: they must be 404.
  assert.deepEqual(
    outcomes.filter((o) => /^\w+ \/h\/(\.\.|%2e%2e)\//.test(o) && !o.endsWith('refused (404)')),
    [],
  );
  // The admin API was not called: no channel created, renamed or deleted.
  assert.deepEqual(await listChannels(r()), before.channels, 'channels unchanged');

  // What was stored is an ordinary event of `trav`, its path suffix kept exactly as sent.
  for (const s of stored) {
    const e = await r().api<EventDetail>('GET', `/api/events/${s.id}`);
    assert.equal(e.channelId, trav, `${s.target}: an event of its own channel`);
    assert.equal(e.method, s.method);
    const suffix = s.target.slice(`/h/${trav}`.length).split('?')[0];
    assert.equal(e.path, suffix, `${s.target}: path kept exactly`);
  }
  const events = await listEvents(r());
  assert.equal(events.length, before.events.length + stored.length, 'only those were stored');

  // The agent confines each delivery to its route's target: every stored event ends delivered
  // (inside /hooks/trav) or failed (it would climb out), and nothing reaches another path.
  const final = await eventually(
    async () => {
      const list = await listEvents(r(), `&channel=trav`);
      return list.length === stored.length &&
        list.every((e) => e.status === 'delivered' || e.status === 'failed')
        ? list
        : undefined;
    },
    30_000,
    'every traversal event to end delivered or failed',
  );
  const a = need(app, 'app');
  const travAtApp = a.received.filter((x) => x.headers['x-postern-channel'] === 'trav');
  assert.equal(
    travAtApp.length,
    final.filter((e) => e.status === 'delivered').length,
    'the app got exactly the deliveries the relay counts as delivered',
  );
  assert.deepEqual(
    a.received.map((x) => x.url).filter((u) => !/^\/hooks\/(trav|limits)(\/|$)/.test(u)),
    [],
    'nothing reached the app outside a route target',
  );
  console.log(
    `traversal: ${outcomes.length} requests, ${stored.length} stored as events ` +
      `(${final.filter((e) => e.status === 'delivered').length} delivered inside the target, ` +
      `${final.filter((e) => e.status === 'failed').length} refused by the agent), ` +
      `${outcomes.length - stored.length} refused with 404`,
  );
});

// ---- afterwards ----------------------------------------------------------------------------------

test('afterwards /healthz is 200 and the agent still delivers', async () => {
  assert.equal(await healthz(r().url), 200);
  const body = Buffer.from('{"after":"all the refusals"}');
  const res = await request(`${r().url}/h/${ch('limits')}/after?x=1`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await res.body.text();
  assert.equal(res.statusCode, 202, text);
  const id = idFrom(text);
  const got = await eventually(
    () => need(app, 'app').received.find((x) => x.headers['x-postern-event-id'] === id),
    30_000,
    'the last webhook at the app',
  );
  assert.deepEqual(got.body, body);
  assert.equal(got.url, '/hooks/limits/after?x=1');
  assert.equal(r().proc.child.exitCode, null, 'the relay process is running');
});
