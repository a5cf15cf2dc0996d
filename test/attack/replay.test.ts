/**
 * Replays of captured signed webhooks, through a real relay, agent and app (finding 7), and
 * forged bodies on an ordered channel keyed by a JSON field (finding 8, relay half).
 *
 * The attacker holds one genuine signed request (captured in a log, a proxy, a shared
 * screenshot) and the ingress URL. They resend it as is, with another method and path, with
 * Stripe's `v1` entries reordered, eight times at once, and after a relay restart. Each time
 * the relay answers `202` with the first event's id and the app gets the webhook once.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before } from 'node:test';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { request } from 'undici';
import { startApp, type Received, type TestApp } from '../helpers/app.ts';
import {
  eventually,
  pairAgent,
  removeDir,
  startAgent,
  startRelay,
  type AgentHandle,
  type RelayHandle,
} from '../helpers/processes.ts';
import { errorCode, healthz, idFrom, listEvents, need } from './support.ts';
import { test } from '../helpers/store.ts';

const GITHUB_SECRET = 'replay-github-secret';
const STRIPE_SECRET = 'whsec_replay_stripe_secret_0123456789';
const SW_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

let relay: RelayHandle | undefined;
let agent: AgentHandle | undefined;
let app: TestApp | undefined;
const ids = new Map<string, string>();

const CHANNELS: [string, Record<string, unknown>][] = [
  ['gh', { verify: { provider: 'github', secret: GITHUB_SECRET } }],
  ['stripe', { verify: { provider: 'stripe', secret: STRIPE_SECRET } }],
  ['sw', { verify: { provider: 'standard-webhooks', secret: SW_SECRET } }],
  ['paths', { paths: ['', '/push', '/github/*'] }],
  [
    'ordered',
    {
      verify: { provider: 'github', secret: GITHUB_SECRET },
      ordered: true,
      orderingKey: { jsonField: 'repository.full_name' },
    },
  ],
];

before(async () => {
  app = await startApp();
  relay = await startRelay();
  for (const [name, options] of CHANNELS) {
    const c = await relay.api<{ id: string }>('POST', '/api/channels', { name, ...options });
    ids.set(name, c.id);
  }
  const names = CHANNELS.map(([n]) => n);
  const { stateDir } = await pairAgent(relay, names);
  agent = await startAgent(
    stateDir,
    names.map((name) => ({ channel: name, target: `${need(app, 'app').url}/${name}` })),
  );
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  if (relay) await removeDir(relay.dataDir);
  if (agent) await removeDir(agent.stateDir);
});

interface Answer {
  status: number;
  text: string;
  allow: string | undefined;
}

/** Sends to a channel's ingress: `target` is the path suffix and query after the channel id. */
async function send(
  channel: string,
  body: string | Buffer,
  headers: Record<string, string>,
  opts: { method?: string; target?: string } = {},
): Promise<Answer> {
  const r = need(relay, 'relay');
  const res = await request(`${r.url}/h/${need(ids.get(channel), channel)}${opts.target ?? ''}`, {
    method: opts.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const allow = res.headers['allow'];
  return {
    status: res.statusCode,
    text: await res.body.text(),
    allow: typeof allow === 'string' ? allow : undefined,
  };
}

/** Sends a request target exactly as written (undici and fetch resolve dot segments first). */
function sendRaw(target: string, body: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(need(relay, 'relay').url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path: target, method: 'POST' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function accepted(answer: Answer, what: string): string {
  assert.equal(answer.status, 202, `${what}: ${answer.status} ${answer.text}`);
  return idFrom(answer.text);
}

/** What the app received on a channel (its route target is /<channel>). */
function receivedOn(channel: string): Received[] {
  const prefix = `/${channel}`;
  return need(app, 'app').received.filter(
    (r) => r.url === prefix || r.url.startsWith(`${prefix}/`) || r.url.startsWith(`${prefix}?`),
  );
}

function deliveriesOf(id: string): number {
  return need(app, 'app').received.filter((r) => r.headers['x-postern-event-id'] === id).length;
}

async function arrived(id: string): Promise<void> {
  await eventually(() => (deliveriesOf(id) > 0 ? true : undefined), 20_000, `${id} at the app`);
}

/** Stored events of a channel (any status). */
async function storedOn(channel: string): Promise<{ id: string; status: string }[]> {
  return listEvents(need(relay, 'relay'), `&channel=${need(ids.get(channel), channel)}`);
}

/**
 * A fresh signed GitHub delivery on `channel`, waited for at the app: anything the relay
 * would have sent before it (a wrongly stored replay) has been dispatched by then.
 */
async function sentinel(channel: string): Promise<void> {
  const body = JSON.stringify({ sentinel: Math.random() });
  const id = accepted(
    await send(channel, body, { 'x-hub-signature-256': await githubSign(GITHUB_SECRET, body) }),
    'sentinel',
  );
  await arrived(id);
}

test('GitHub: the same body and signature again → 202 with the first id, delivered once', async () => {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: 'c0ffee', n: 1 });
  const headers = {
    'x-hub-signature-256': await githubSign(GITHUB_SECRET, body),
    'x-github-event': 'push',
    'x-github-delivery': 'delivery-1',
  };
  const first = accepted(await send('gh', body, headers, { target: '/push' }), 'original');
  await arrived(first);
  const again = accepted(await send('gh', body, headers, { target: '/push' }), 'replay');
  assert.equal(again, first, 'the replay is answered with the first event id');
  const other = accepted(
    await send('gh', body, { ...headers, 'x-github-delivery': 'delivery-2' }, { target: '/x' }),
    'replay with another delivery id and path',
  );
  assert.equal(other, first);

  // Another method and path: refused by method before anything is read.
  const put = await send(
    'gh',
    body,
    { ...headers, 'x-github-event': 'ping' },
    { method: 'PUT', target: '/admin/reindex?force=true' },
  );
  assert.equal(put.status, 405, put.text);
  assert.equal(errorCode(put.text), 'ERR_METHOD_NOT_ALLOWED');
  assert.equal(put.allow, 'POST');

  // A channel that takes PUT as well: the replay is still the same signed request.
  const r = need(relay, 'relay');
  await r.api('PATCH', `/api/channels/gh`, { methods: ['POST', 'PUT'] });
  const putAllowed = await send(
    'gh',
    body,
    { ...headers, 'x-github-event': 'ping' },
    { method: 'PUT', target: '/admin/reindex?force=true' },
  );
  assert.equal(accepted(putAllowed, 'PUT replay on a channel taking PUT'), first);
  await r.api('PATCH', `/api/channels/gh`, { methods: null });

  await sentinel('gh');
  assert.equal(deliveriesOf(first), 1, 'the app received the webhook exactly once');
  assert.equal(
    receivedOn('gh').filter((x) => x.method !== 'POST' || x.url.includes('admin')).length,
    0,
    'nothing but POSTs to the webhook path reached the app',
  );
  const stored = (await storedOn('gh')).filter((e) => e.id === first);
  assert.equal(stored.length, 1);
});

test('Stripe: a replay in the window (v1 entries reordered) is deduped; a new t is a new event', async () => {
  const stripe = new Stripe('sk_test_unused');
  const body = '{"id":"evt_stripe_1","type":"invoice.paid"}';
  const t = Math.floor(Date.now() / 1000);
  const header = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: STRIPE_SECRET,
    timestamp: t,
  });
  const v1 = need(/v1=([0-9a-f]{64})/.exec(header)?.[1], 'the v1 signature');
  const first = accepted(await send('stripe', body, { 'stripe-signature': header }), 'original');
  await arrived(first);
  const decoy = 'ab'.repeat(32);
  for (const variant of [
    header,
    `v1=${decoy},v1=${v1},t=${t}`, // reordered, with a decoy entry
    `t=${t},v0=${decoy},v1=${v1}`,
  ]) {
    const again = accepted(await send('stripe', body, { 'stripe-signature': variant }), variant);
    assert.equal(again, first, `replay with "${variant}"`);
  }
  // Stripe signing the same body anew (its own retry carries a new t): a new signed request.
  const resigned = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: STRIPE_SECRET,
    timestamp: t + 1,
  });
  const second = accepted(await send('stripe', body, { 'stripe-signature': resigned }), 'new t');
  assert.notEqual(second, first);
  await arrived(second);
  assert.equal(deliveriesOf(first), 1);
  assert.equal(deliveriesOf(second), 1);
  assert.equal((await storedOn('stripe')).length, 2);
});

test('Standard Webhooks: the same webhook-id with a valid new signature is deduped', async () => {
  const wh = new Webhook(SW_SECRET);
  const body = '{"type":"user.created","data":{"id":"u_1"}}';
  const signed = (id: string, at: Date): Record<string, string> => ({
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': wh.sign(id, at, body),
  });
  const now = Date.now();
  const first = accepted(await send('sw', body, signed('msg_1', new Date(now))), 'original');
  await arrived(first);
  const retry = signed('msg_1', new Date(now + 30_000));
  assert.notEqual(retry['webhook-signature'], signed('msg_1', new Date(now))['webhook-signature']);
  assert.equal(accepted(await send('sw', body, retry), 'same id, new signature'), first);
  const next = accepted(await send('sw', body, signed('msg_2', new Date(now))), 'another id');
  assert.notEqual(next, first);
  await arrived(next);
  assert.equal(deliveriesOf(first), 1);
  assert.equal((await storedOn('sw')).length, 2);
});

test('8 identical signed requests at once: 8 × 202 with one id, 1 stored, 1 delivered', async () => {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: 'burst', n: 8 });
  const headers = { 'x-hub-signature-256': await githubSign(GITHUB_SECRET, body) };
  const before = (await storedOn('gh')).length;
  const answers = await Promise.all(Array.from({ length: 8 }, () => send('gh', body, headers)));
  const answered = answers.map((a, i) => accepted(a, `request ${i}`));
  assert.equal(new Set(answered).size, 1, `one id for all: ${answered.join(', ')}`);
  const id = answered[0]!;
  await arrived(id);
  await sentinel('gh');
  assert.equal((await storedOn('gh')).length, before + 2, 'the burst and the sentinel');
  assert.equal(deliveriesOf(id), 1);
});

test('a forged request repeated is refused each time, and never blocks the valid one', async () => {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: 'forged-then-valid' });
  const forged = { 'x-hub-signature-256': await githubSign('not-the-secret', body) };
  for (let i = 0; i < 3; i++) {
    const res = await send('gh', body, forged);
    assert.equal(res.status, 401, res.text);
    assert.equal(errorCode(res.text), 'ERR_SIGNATURE');
  }
  const id = accepted(
    await send('gh', body, { 'x-hub-signature-256': await githubSign(GITHUB_SECRET, body) }),
    'the valid one after the forgeries',
  );
  await arrived(id);
  assert.equal(deliveriesOf(id), 1);
});

test('paths: allowed suffixes are delivered, others are 404 and stored nowhere', async () => {
  const channel = need(ids.get('paths'), 'paths channel');
  const allowed: [string, string][] = [
    ['', '/paths'],
    ['/push', '/paths/push'],
    ['/github/a/b?x=1', '/paths/github/a/b?x=1'],
  ];
  const delivered: string[] = [];
  for (const [target, atApp] of allowed) {
    const id = accepted(await send('paths', `{"to":"${target}"}`, {}, { target }), target);
    await arrived(id);
    const got = need(app, 'app').received.find((r) => r.headers['x-postern-event-id'] === id);
    assert.equal(got?.url, atApp);
    delivered.push(id);
  }
  for (const target of ['/', '/admin', '/pushx', '/github', '/githubx/a']) {
    const res = await send('paths', '{}', {}, { target });
    assert.equal(res.status, 404, `${target}: ${res.status}`);
    assert.equal(errorCode(res.text), 'ERR_NOT_FOUND');
    assert.match(res.text, /path not allowed on this channel/);
  }
  for (const target of ['/push/../admin', '/github/%2e%2e/%2e%2e/admin', '/github/..\\admin']) {
    const res = await sendRaw(`/h/${channel}${target}`, '{}');
    assert.equal(res.status, 404, `${target}: ${res.status} ${res.text}`);
  }
  const stored = await storedOn('paths');
  assert.deepEqual(stored.map((e) => e.id).sort(), [...delivered].sort());
  assert.equal(receivedOn('paths').length, 3);
});

test('forged 10 MB nested bodies on a JSON-keyed ordered channel: 401, /healthz answers', async () => {
  const depth = Math.floor((10 * 1024 * 1024) / 7);
  const nested = Buffer.from(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
  const forged = { 'x-hub-signature-256': await githubSign('not-the-secret', 'x') };
  const r = need(relay, 'relay');
  const timings: string[] = [];
  let worstHealthz = 0;
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    const pending = send('ordered', nested, forged);
    let done = false;
    void pending.finally(() => (done = true));
    // /healthz while the forged body is taken in and refused (bounded: 200 probes at most).
    for (let probe = 0; probe < 200 && !done; probe++) {
      const at = performance.now();
      assert.equal(await healthz(r.url), 200);
      worstHealthz = Math.max(worstHealthz, performance.now() - at);
    }
    const res = await pending;
    assert.equal(res.status, 401, res.text);
    assert.equal(errorCode(res.text), 'ERR_SIGNATURE');
    timings.push(`${Math.round(performance.now() - started)} ms`);
  }
  console.log(
    `forged 10 MB nested bodies: answered in ${timings.join(', ')}; ` +
      `slowest /healthz meanwhile ${Math.round(worstHealthz)} ms`,
  );
  // Refusals are recorded without waiting for the disk (a flood must not cost a flush each).
  const events = await eventually(
    async () => {
      const stored = await storedOn('ordered');
      return stored.length >= 5 ? stored : undefined;
    },
    10_000,
    'the five refusals recorded',
  );
  assert.deepEqual(
    events.map((e) => e.status),
    ['rejected', 'rejected', 'rejected', 'rejected', 'rejected'],
  );
  // A valid delivery on the same channel still gets its key and goes through.
  const body = '{"repository":{"full_name":"octo/app"}}';
  const id = accepted(
    await send('ordered', body, { 'x-hub-signature-256': await githubSign(GITHUB_SECRET, body) }),
    'valid',
  );
  await arrived(id);
  const view = await r.api<{ orderKey?: string }>('GET', `/api/events/${id}`);
  assert.equal(view.orderKey, 'octo/app');
});

test('a replay after a relay restart is still deduped (last: restarts the relay)', async () => {
  const body = JSON.stringify({ ref: 'refs/heads/main', after: 'before-restart' });
  const headers = { 'x-hub-signature-256': await githubSign(GITHUB_SECRET, body) };
  const first = accepted(await send('gh', body, headers), 'original');
  await arrived(first);
  const old = need(relay, 'relay');
  const port = Number(new URL(old.url).port);
  const agentLines = need(agent, 'agent').proc.lines.length;
  await old.stop();
  relay = await startRelay({ dataDir: old.dataDir, port });
  assert.equal(relay.url, old.url);
  await need(agent, 'agent').proc.waitForMsg('connected to the relay', 30_000, agentLines);
  const again = accepted(await send('gh', body, headers), 'replay after the restart');
  assert.equal(again, first);
  await sentinel('gh');
  assert.equal(deliveriesOf(first), 1);
  assert.equal((await storedOn('gh')).filter((e) => e.id === first).length, 1);
});
