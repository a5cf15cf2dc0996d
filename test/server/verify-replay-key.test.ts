/**
 * Replay keys: two requests that verify with the same signed content share a key whatever
 * else a replayer changes (method, path, unsigned headers, the order of Stripe's `v1`
 * entries, Twilio's parameter order or URL spelling); a change to what is signed gives
 * another key. Every request here is checked to verify first, as ingress does.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import {
  BODY_REPLAY_MS,
  TIMESTAMP_TOLERANCE_MS,
  TIMESTAMPED_REPLAY_MS,
} from '../../server/verify/common.ts';
import {
  providerMethods,
  replayKeyOf,
  verifyRequest,
  type ReplayKey,
  type SignedRequest,
} from '../../server/verify/index.ts';
import { MAX_DEDUP_AGE_MS } from '../../server/store/embedded.ts';
import type { VerifyConfig } from '../../server/store/types.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

const NOW = 1_700_000_000_000;
const T = NOW / 1000;
const URL_ = 'https://relay.example.com/h/ch_1';

function req(
  headers: HeaderPair[],
  body: string,
  opts: { method?: string; url?: string; now?: number } = {},
): SignedRequest {
  return {
    method: opts.method ?? 'POST',
    url: opts.url ?? URL_,
    headers,
    body: Buffer.from(body),
    now: opts.now ?? NOW,
  };
}

/** The replay key of a request that must verify. */
function keyOf(config: VerifyConfig, request: SignedRequest): ReplayKey {
  assert.deepEqual(verifyRequest(config, request), { ok: true }, 'the request verifies');
  const key = replayKeyOf(config, request);
  assert.ok(key, 'a verified request has a replay key');
  assert.match(key.key, /^[A-Za-z0-9_-]{43}$/, 'SHA-256 as base64url');
  return key;
}

function hmacHex(secret: string, ...parts: string[]): string {
  const mac = createHmac('sha256', secret);
  for (const p of parts) mac.update(p);
  return mac.digest('hex');
}

test('the windows: timestamped schemes past twice the tolerance; the store keeps them all', () => {
  assert.ok(TIMESTAMPED_REPLAY_MS >= 2 * TIMESTAMP_TOLERANCE_MS);
  assert.equal(TIMESTAMPED_REPLAY_MS, 11 * 60_000);
  assert.equal(BODY_REPLAY_MS, 24 * 3_600_000);
  assert.ok(MAX_DEDUP_AGE_MS > BODY_REPLAY_MS, 'the store keeps keys longer than any window');
});

test('GitHub: the body alone; method, URL and X-GitHub-Delivery do not change the key', () => {
  const config: VerifyConfig = { provider: 'github', secret: 'gh-secret' };
  const body = '{"action":"opened","number":7}';
  const sig = `sha256=${hmacHex('gh-secret', body)}`;
  const first = keyOf(
    config,
    req(
      [
        ['X-Hub-Signature-256', sig],
        ['X-GitHub-Event', 'push'],
        ['X-GitHub-Delivery', 'd-1'],
      ],
      body,
    ),
  );
  const replayed = keyOf(
    config,
    req(
      [
        ['X-Hub-Signature-256', sig],
        ['X-GitHub-Event', 'ping'],
        ['X-GitHub-Delivery', 'd-2'],
      ],
      body,
      { method: 'PUT', url: `${URL_}/admin/reindex?force=true` },
    ),
  );
  assert.deepEqual(replayed, first);
  assert.equal(first.windowMs, BODY_REPLAY_MS);
  const other = '{"action":"opened","number":8}';
  const next = keyOf(
    config,
    req([['X-Hub-Signature-256', `sha256=${hmacHex('gh-secret', other)}`]], other),
  );
  assert.notEqual(next.key, first.key);
});

test('body-only providers tag their keys: the same body on GitHub and Meta differs', () => {
  const body = '{"object":"page"}';
  const sig = `sha256=${hmacHex('s', body)}`;
  const gh = keyOf({ provider: 'github', secret: 's' }, req([['X-Hub-Signature-256', sig]], body));
  const meta = keyOf(
    { provider: 'meta', secret: 's', verifyToken: 'v' },
    req([['X-Hub-Signature-256', sig]], body),
  );
  const hmac = keyOf(
    { provider: 'hmac', secret: 's', header: 'X-Sig', algorithm: 'sha256', encoding: 'hex' },
    req([['X-Sig', hmacHex('s', body)]], body),
  );
  const shopify = keyOf(
    { provider: 'shopify', secret: 's' },
    req([['X-Shopify-Hmac-Sha256', createHmac('sha256', 's').update(body).digest('base64')]], body),
  );
  assert.equal(new Set([gh.key, meta.key, hmac.key, shopify.key]).size, 4);
  for (const k of [gh, meta, hmac, shopify]) assert.equal(k.windowMs, BODY_REPLAY_MS);
});

test('Stripe: t and the body; reordered or dropped v1 entries keep the key, a new t does not', () => {
  const secret = 'whsec_test';
  const config: VerifyConfig = { provider: 'stripe', secret };
  const body = '{"id":"evt_1"}';
  const good = hmacHex(secret, `${T}.`, body);
  const other = hmacHex('whsec_other', `${T}.`, body);
  const key = (header: string) => keyOf(config, req([['Stripe-Signature', header]], body));
  const first = key(`t=${T},v1=${good},v1=${other}`);
  assert.deepEqual(key(`v1=${other},v1=${good},t=${T}`), first, 'entries reordered');
  assert.deepEqual(key(`t=${T},v1=${good}`), first, 'an entry dropped');
  assert.deepEqual(key(`t=${T},v0=abc,v1=${good}`), first, 'another scheme added');
  assert.equal(first.windowMs, TIMESTAMPED_REPLAY_MS);
  const later = key(`t=${T + 1},v1=${hmacHex(secret, `${T + 1}.`, body)}`);
  assert.notEqual(later.key, first.key, 'a new signature with a new t is a new request');
});

test('Slack: the timestamp and the body', () => {
  const secret = 'slack-secret';
  const config: VerifyConfig = { provider: 'slack', secret };
  const body = 'token=x&command=%2Fdeploy';
  const signed = (ts: number, extra: HeaderPair[] = []) =>
    req(
      [
        ['X-Slack-Request-Timestamp', String(ts)],
        ['X-Slack-Signature', `v0=${hmacHex(secret, `v0:${ts}:`, body)}`],
        ...extra,
      ],
      body,
    );
  const first = keyOf(config, signed(T));
  assert.deepEqual(keyOf(config, signed(T, [['X-Slack-Retry-Num', '1']])), first);
  assert.notEqual(keyOf(config, signed(T + 60)).key, first.key);
  assert.equal(first.windowMs, TIMESTAMPED_REPLAY_MS);
});

test('Standard Webhooks: the webhook-id, even with a new timestamp and signature', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const config: VerifyConfig = { provider: 'standard-webhooks', secret };
  const wh = new Webhook(secret);
  const body = '{"type":"user.created"}';
  const signed = (id: string, ts: number) =>
    req(
      [
        ['webhook-id', id],
        ['webhook-timestamp', String(ts)],
        ['webhook-signature', wh.sign(id, new Date(ts * 1000), body)],
      ],
      body,
    );
  const first = keyOf(config, signed('msg_1', T));
  assert.deepEqual(keyOf(config, signed('msg_1', T + 120)), first, "the sender's retry");
  assert.notEqual(keyOf(config, signed('msg_2', T)).key, first.key);
  assert.equal(first.windowMs, BODY_REPLAY_MS);
});

test('Twilio: the URL and the parameters, however the URL is spelled or the body ordered', () => {
  const token = 'tw-token';
  const config: VerifyConfig = { provider: 'twilio', secret: token };
  const url = 'https://relay.example.com/h/ch_1/sms';
  const params: [string, string][] = [
    ['From', '+15550001'],
    ['Body', 'hi'],
  ];
  const data = [...params]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .reduce((s, [n, v]) => s + n + v, url);
  const sig = createHmac('sha1', token).update(data).digest('base64');
  const form = (body: string, at = url) =>
    req(
      [
        ['Content-Type', 'application/x-www-form-urlencoded'],
        ['X-Twilio-Signature', sig],
      ],
      body,
      { url: at },
    );
  const first = keyOf(config, form('From=%2B15550001&Body=hi'));
  assert.deepEqual(keyOf(config, form('Body=hi&From=%2B15550001')), first, 'parameters reordered');
  // The URL parser's forms of the same signed URL: a dot segment, the default port spelled out.
  assert.deepEqual(
    keyOf(config, form('Body=hi&From=%2B15550001', 'https://relay.example.com/h/ch_1/./sms')),
    first,
  );
  assert.deepEqual(
    keyOf(config, form('From=%2B15550001&Body=hi', 'https://relay.example.com:443/h/ch_1/sms')),
    first,
  );
  assert.equal(first.windowMs, BODY_REPLAY_MS);
  // A JSON body: covered by the bodySHA256 in the signed URL.
  const json = '{"a":1}';
  const hashed = `${url}?bodySHA256=${createHash('sha256').update(json).digest('hex')}`;
  const jsonSig = createHmac('sha1', token).update(hashed).digest('base64');
  const jsonKey = keyOf(
    config,
    req(
      [
        ['Content-Type', 'application/json'],
        ['X-Twilio-Signature', jsonSig],
      ],
      json,
      { url: hashed },
    ),
  );
  assert.notEqual(jsonKey.key, first.key);
});

test('the methods each provider sends', () => {
  const methods = (provider: string, extra: Record<string, unknown> = {}) =>
    providerMethods({ provider, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', ...extra });
  for (const p of ['github', 'stripe', 'slack', 'shopify', 'standard-webhooks', 'hmac']) {
    assert.deepEqual(methods(p), ['POST'], p);
  }
  assert.deepEqual(methods('meta'), ['POST', 'GET'], "Meta's hub.challenge check is a GET");
  assert.deepEqual(methods('twilio'), ['POST', 'GET'], 'Twilio may be set to call with GET');
});
