/**
 * Provider verification through a real relay, agent and app, with signatures made by the
 * providers' own libraries: a valid request is delivered byte-exact; a flipped byte in the
 * body, the signature or the timestamp is refused 401 and never delivered; stale and future
 * timestamps are refused; the Slack and Meta handshakes are answered at the edge; and a
 * re-signed delivery verifies with the Standard Webhooks library in the app.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before } from 'node:test';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import twilio from 'twilio';
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
import { test } from '../helpers/store.ts';

const SECRETS = {
  github: "It's a Secret to Everybody",
  stripe: 'whsec_test_stripe_secret_0123456789',
  slack: '8f742231b10e8888abcd99yyyzzz85a5',
  twilio: '12345',
  sw: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  meta: 'meta-app-secret-42',
};
const SIGNING_SECRET = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD';

let relay: RelayHandle;
let agent: AgentHandle;
let app: TestApp;
const ingress = new Map<string, string>();

before(async () => {
  app = await startApp();
  relay = await startRelay();
  const channels: [string, Record<string, unknown>][] = [
    ['github', { provider: 'github', secret: SECRETS.github }],
    ['stripe', { provider: 'stripe', secret: SECRETS.stripe }],
    ['slack', { provider: 'slack', secret: SECRETS.slack }],
    ['twilio', { provider: 'twilio', secret: SECRETS.twilio }],
    ['sw', { provider: 'standard-webhooks', secret: SECRETS.sw }],
    ['meta', { provider: 'meta', secret: SECRETS.meta, verifyToken: 'hub-token-7' }],
  ];
  for (const [name, verify] of channels) {
    const c = await relay.api('POST', '/api/channels', { name, verify });
    ingress.set(name, c.ingressUrl);
  }
  const { stateDir } = await pairAgent(
    relay,
    channels.map(([n]) => n),
  );
  agent = await startAgent(
    stateDir,
    channels.map(([name]) => ({
      channel: name,
      target: `${app.url}/${name}`,
      ...(name === 'github' ? { signingSecret: SIGNING_SECRET } : {}),
    })),
  );
});

after(async () => {
  await agent?.stop();
  await relay?.stop();
  await app?.close();
  await removeDir(relay.dataDir);
  await removeDir(agent.stateDir);
});

/** Posts to a channel's ingress (reached through the relay's real address). */
async function post(
  channel: string,
  body: Buffer | string,
  headers: Record<string, string>,
  suffix = '',
): Promise<{ status: number; text: string }> {
  const url = new URL(`${ingress.get(channel)!}${suffix}`);
  const res = await request(`${relay.url}${url.pathname}${url.search}`, {
    method: 'POST',
    headers,
    body,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

async function arrived(id: string): Promise<Received> {
  return eventually(
    () => app.received.find((r) => r.headers['x-postern-event-id'] === id),
    20_000,
    `event ${id} at the app`,
  );
}

function flip(text: string, at = -3): string {
  const i = at < 0 ? text.length + at : at;
  const c = text[i]!;
  const swapped = c === 'a' ? 'b' : c === 'A' ? 'B' : c === '0' ? '1' : c === '1' ? '0' : 'a';
  return text.slice(0, i) + swapped + text.slice(i + 1);
}

/** Every case is refused with 401 (the last test checks that none reached the app). */
async function refused(
  channel: string,
  cases: [string, Buffer | string, Record<string, string>][],
): Promise<void> {
  for (const [what, body, headers] of cases) {
    const res = await post(channel, body, headers);
    assert.equal(res.status, 401, `${channel}: ${what} → ${res.status} ${res.text}`);
    assert.match(res.text, /ERR_SIGNATURE/);
  }
}

test('GitHub (octokit): valid delivered byte-exact and re-signed; tampering refused', async () => {
  const body = '{"ref":"refs/heads/main","after":"a1b2c3"}';
  const signature = await githubSign(SECRETS.github, body);
  const ok = await post('github', body, {
    'x-hub-signature-256': signature,
    'x-github-event': 'push',
  });
  assert.equal(ok.status, 202, ok.text);
  const { id } = JSON.parse(ok.text) as { id: string };
  const got = await arrived(id);
  assert.equal(got.body.toString(), body);
  assert.equal(got.headers['x-hub-signature-256'], signature, "the provider's own header is kept");
  // The agent's Standard Webhooks signature verifies with the official library.
  const wh = new Webhook(SIGNING_SECRET);
  const verified = wh.verify(got.body.toString(), {
    'webhook-id': String(got.headers['webhook-id']),
    'webhook-timestamp': String(got.headers['webhook-timestamp']),
    'webhook-signature': String(got.headers['webhook-signature']),
  });
  assert.deepEqual(verified, JSON.parse(body));
  assert.equal(got.headers['webhook-id'], id);
  assert.throws(() =>
    wh.verify(`${body} `, {
      'webhook-id': String(got.headers['webhook-id']),
      'webhook-timestamp': String(got.headers['webhook-timestamp']),
      'webhook-signature': String(got.headers['webhook-signature']),
    }),
  );
  await refused('github', [
    ['flipped body byte', flip(body, 5), { 'x-hub-signature-256': signature }],
    ['flipped signature', body, { 'x-hub-signature-256': flip(signature) }],
    ['no signature', body, {}],
  ]);
});

test('Stripe (stripe library): valid delivered; flipped body, signature, timestamp and stale/future refused', async () => {
  const stripe = new Stripe('sk_test_unused');
  const body = '{"id":"evt_1","type":"invoice.paid"}';
  const now = Math.floor(Date.now() / 1000);
  const header = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: SECRETS.stripe,
    timestamp: now,
  });
  const ok = await post('stripe', body, { 'stripe-signature': header });
  assert.equal(ok.status, 202, ok.text);
  assert.equal((await arrived(JSON.parse(ok.text).id)).body.toString(), body);
  const stale = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: SECRETS.stripe,
    timestamp: now - 360,
  });
  const future = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: SECRETS.stripe,
    timestamp: now + 360,
  });
  await refused('stripe', [
    ['flipped body byte', flip(body, 3), { 'stripe-signature': header }],
    ['flipped signature', body, { 'stripe-signature': flip(header) }],
    ['flipped timestamp', body, { 'stripe-signature': header.replace(`t=${now}`, `t=${now - 1}`) }],
    ['stale timestamp', body, { 'stripe-signature': stale }],
    ['future timestamp', body, { 'stripe-signature': future }],
  ]);
});

function slackHeaders(body: string, ts: number, secret = SECRETS.slack): Record<string, string> {
  const sig = createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex');
  return {
    'x-slack-request-timestamp': String(ts),
    'x-slack-signature': `v0=${sig}`,
    'content-type': 'application/x-www-form-urlencoded',
  };
}

test('Slack: valid delivered; url_verification answered at the edge; tampering and stale refused', async () => {
  const now = Math.floor(Date.now() / 1000);
  const body = 'token=x&command=%2Fdeploy&text=prod';
  const ok = await post('slack', body, slackHeaders(body, now));
  assert.equal(ok.status, 202, ok.text);
  assert.equal((await arrived(JSON.parse(ok.text).id)).body.toString(), body);

  const challenge = JSON.stringify({
    token: 't',
    challenge: 'c-3eZbrw1aB',
    type: 'url_verification',
  });
  const before = app.received.length;
  const hs = await post('slack', challenge, {
    ...slackHeaders(challenge, now),
    'content-type': 'application/json',
  });
  assert.equal(hs.status, 200);
  assert.deepEqual(JSON.parse(hs.text), { challenge: 'c-3eZbrw1aB' });
  const forgedChallenge = await post('slack', challenge, {
    ...slackHeaders(challenge, now, 'wrong-secret'),
    'content-type': 'application/json',
  });
  assert.equal(forgedChallenge.status, 401, 'an unsigned url_verification gets no challenge back');
  const headers = slackHeaders(body, now);
  await refused('slack', [
    ['flipped body byte', flip(body, 2), headers],
    [
      'flipped signature',
      body,
      { ...headers, 'x-slack-signature': flip(headers['x-slack-signature']!) },
    ],
    ['flipped timestamp', body, { ...headers, 'x-slack-request-timestamp': String(now - 1) }],
    ['stale timestamp', body, slackHeaders(body, now - 360)],
    ['future timestamp', body, slackHeaders(body, now + 360)],
  ]);
  assert.equal(app.received.length, before, 'no handshake or refused request reached the app');
});

test('Twilio (twilio library): valid form POST delivered; tampering refused', async () => {
  const params = {
    CallSid: 'CA1234567890ABCDE',
    From: '+12349013030',
    To: '+18005551212',
    Digits: '1234',
  };
  const body = new URLSearchParams(params).toString();
  const suffix = '/voice?foo=1&bar=2';
  const url = `${ingress.get('twilio')!}${suffix}`;
  const signature = twilio.getExpectedTwilioSignature(SECRETS.twilio, url, params);
  const headers = {
    'x-twilio-signature': signature,
    'content-type': 'application/x-www-form-urlencoded',
  };
  const ok = await post('twilio', body, headers, suffix);
  assert.equal(ok.status, 202, ok.text);
  const got = await arrived(JSON.parse(ok.text).id);
  assert.equal(got.body.toString(), body);
  assert.equal(got.url, '/twilio/voice?foo=1&bar=2');
  for (const [what, b, h, s] of [
    ['flipped body byte', body.replace('1234', '1235'), headers, suffix],
    ['flipped signature', body, { ...headers, 'x-twilio-signature': flip(signature, 2) }, suffix],
    ['another URL', body, headers, '/voice?foo=1&bar=3'],
  ] as const) {
    const res = await post('twilio', b, h, s);
    assert.equal(res.status, 401, `${what} → ${res.status}`);
  }
});

test('Standard Webhooks (standardwebhooks library): valid delivered; tampering and stale refused', async () => {
  const wh = new Webhook(SECRETS.sw);
  const body = '{"type":"user.created","data":{"id":"u_1"}}';
  const now = new Date();
  const headers = (id: string, at: Date, b = body) => ({
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': wh.sign(id, at, b),
  });
  const ok = await post('sw', body, headers('msg_1', now));
  assert.equal(ok.status, 202, ok.text);
  assert.equal((await arrived(JSON.parse(ok.text).id)).body.toString(), body);
  const good = headers('msg_2', now);
  await refused('sw', [
    ['flipped body byte', flip(body, 4), good],
    ['flipped signature', body, { ...good, 'webhook-signature': flip(good['webhook-signature']) }],
    [
      'flipped timestamp',
      body,
      { ...good, 'webhook-timestamp': String(Number(good['webhook-timestamp']) - 1) },
    ],
    ['stale timestamp', body, headers('msg_3', new Date(now.getTime() - 360_000))],
    ['future timestamp', body, headers('msg_4', new Date(now.getTime() + 360_000))],
  ]);
});

test('Meta: hub.challenge answered at the edge (403 on a wrong token); signed POST delivered', async () => {
  const base = new URL(ingress.get('meta')!);
  const get = async (token: string) => {
    const res = await request(
      `${relay.url}${base.pathname}?hub.mode=subscribe&hub.verify_token=${token}&hub.challenge=1158201444`,
    );
    return { status: res.statusCode, text: await res.body.text() };
  };
  const before = app.received.length;
  assert.deepEqual(await get('hub-token-7'), { status: 200, text: '1158201444' });
  assert.equal((await get('hub-token-8')).status, 403);
  assert.equal(app.received.length, before, 'handshakes never reach the app');
  const body = '{"object":"whatsapp_business_account","entry":[]}';
  const signature = `sha256=${createHmac('sha256', SECRETS.meta).update(body).digest('hex')}`;
  const ok = await post('meta', body, { 'x-hub-signature-256': signature });
  assert.equal(ok.status, 202, ok.text);
  assert.equal((await arrived(JSON.parse(ok.text).id)).body.toString(), body);
  await refused('meta', [['flipped signature', body, { 'x-hub-signature-256': flip(signature) }]]);
});

test('refused requests are listed as rejected and none of them reached the app', async () => {
  const { events } = await relay.api('GET', '/api/events?status=rejected&limit=500');
  assert.ok(
    (events as unknown[]).length >= 20,
    `${(events as unknown[]).length} rejected events listed`,
  );
  const rejectedIds = new Set((events as { id: string }[]).map((e) => e.id));
  const leaked = app.received.filter((r) =>
    rejectedIds.has(String(r.headers['x-postern-event-id'])),
  );
  assert.deepEqual(leaked, []);
  // Every delivery the app saw carries a 202'd, verified event: no body seen twice by
  // accident of a forged copy.
  const accepted = (await relay.api('GET', '/api/events?status=delivered&limit=500')).events as {
    id: string;
  }[];
  assert.equal(app.received.length, accepted.length);
});
