import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { meta, type MetaConfig } from '../../server/verify/meta.ts';
import {
  handshakeAnswer,
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

// Meta signs exactly as GitHub does, so GitHub's published example (provider-vectors.md) applies.
const SECRET = "It's a Secret to Everybody";
const BODY = 'Hello, World!';
const HEADER = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
const TOKEN = 'my verify token+/&=';
const config: MetaConfig = { provider: 'meta', secret: SECRET, verifyToken: TOKEN };
const BASE = 'https://relay.example.com/h/ch_1/whatsapp';

function sign(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function request(header: string | undefined, body: string | Buffer = BODY): SignedRequest {
  const headers: HeaderPair[] = [['Content-Type', 'application/json']];
  if (header !== undefined) headers.push(['X-Hub-Signature-256', header]);
  return {
    method: 'POST',
    url: BASE,
    headers,
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    now: 1_700_000_000_000,
  };
}

function get(query: Record<string, string>, method = 'GET'): SignedRequest {
  return {
    method,
    url: `${BASE}?${new URLSearchParams(query).toString()}`,
    headers: [],
    body: Buffer.alloc(0),
    now: 1_700_000_000_000,
  };
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test('the published example verifies (the same scheme as GitHub)', () => {
  assert.deepEqual(meta.verify(config, request(HEADER)), OK);
  assert.deepEqual(verifyRequest(config, request(HEADER)), OK);
  const body = Buffer.from([0xff, 0x00, 0x80]);
  assert.deepEqual(meta.verify(config, request(sign(SECRET, body), body)), OK);
});

test('a changed body, digest or secret is a mismatch', () => {
  assert.deepEqual(meta.verify(config, request(HEADER, 'Hello, World?')), MISMATCH);
  assert.deepEqual(meta.verify(config, request(`${HEADER.slice(0, -1)}6`)), MISMATCH);
  assert.deepEqual(meta.verify({ ...config, secret: 'other' }, request(HEADER)), MISMATCH);
  // The verify token is no signing key.
  assert.deepEqual(meta.verify(config, request(sign(TOKEN, BODY))), MISMATCH);
});

test('a missing signature header; the SHA-1 header alone is not enough', () => {
  const missing = { ok: false, reason: 'missing_signature' };
  assert.deepEqual(meta.verify(config, request(undefined)), missing);
  const sha1Only: SignedRequest = {
    ...request(undefined),
    headers: [['X-Hub-Signature', 'sha1=00']],
  };
  assert.deepEqual(meta.verify(config, sha1Only), missing);
});

test('a malformed signature, including the right one followed by garbage', () => {
  for (const value of [
    `${HEADER}zz`,
    `${HEADER}0`,
    `${HEADER}00`,
    `${HEADER} `,
    HEADER.slice(7),
    `sha1=${HEADER.slice(7)}`,
    `SHA256=${HEADER.slice(7)}`,
    HEADER.slice(0, -1),
    'sha256=',
    '',
  ]) {
    assert.deepEqual(meta.verify(config, request(value)), MALFORMED, value);
  }
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating: MetaConfig = { ...config, secret: 'new-secret', previousSecret: SECRET };
  assert.deepEqual(meta.verify(rotating, request(HEADER)), OK);
  assert.deepEqual(meta.verify(rotating, request(sign('new-secret', BODY))), OK);
  assert.deepEqual(meta.verify(rotating, request(sign('third', BODY))), MISMATCH);
  assert.deepEqual(meta.verify({ ...config, secret: 'new-secret' }, request(HEADER)), MISMATCH);
});

test('the subscription check with the right token is answered with the challenge', () => {
  const check = get({
    'hub.mode': 'subscribe',
    'hub.challenge': '1158201444',
    'hub.verify_token': TOKEN,
  });
  const answer = { status: 200, contentType: 'text/plain', body: '1158201444' };
  assert.deepEqual(meta.handshake?.(config, check), answer);
  assert.deepEqual(handshakeAnswer(config, check), answer);
});

test('a subscription check with a wrong or missing token gets 403, never verify', () => {
  const forbidden = { status: 403, contentType: 'text/plain' };
  for (const token of [
    undefined,
    '',
    'wrong',
    `${TOKEN} `,
    TOKEN.slice(0, -1),
    TOKEN.toUpperCase(),
  ]) {
    const query: Record<string, string> = { 'hub.mode': 'subscribe', 'hub.challenge': '42' };
    if (token !== undefined) query['hub.verify_token'] = token;
    const answer = handshakeAnswer(config, get(query));
    assert.deepEqual(
      answer && { status: answer.status, contentType: answer.contentType },
      forbidden,
      String(token),
    );
    assert.equal(answer?.body.includes('42'), false);
    assert.equal(answer?.body.includes(TOKEN), false);
  }
});

test('the right token without a challenge gets 400', () => {
  const answer = handshakeAnswer(
    config,
    get({ 'hub.mode': 'subscribe', 'hub.verify_token': TOKEN }),
  );
  assert.equal(answer?.status, 400);
  const long = {
    'hub.mode': 'subscribe',
    'hub.verify_token': TOKEN,
    'hub.challenge': 'x'.repeat(1025),
  };
  assert.equal(handshakeAnswer(config, get(long))?.status, 400);
});

test('anything else is no handshake and goes to verify', () => {
  const query = { 'hub.mode': 'subscribe', 'hub.challenge': '42', 'hub.verify_token': TOKEN };
  // The check is a GET; a POST with the same query is an event like any other.
  const post = get(query, 'POST');
  assert.equal(handshakeAnswer(config, post), null);
  assert.deepEqual(verifyRequest(config, post), { ok: false, reason: 'missing_signature' });
  const unsubscribe = get({ ...query, 'hub.mode': 'unsubscribe' });
  assert.equal(handshakeAnswer(config, unsubscribe), null);
  assert.equal(handshakeAnswer(config, get({})), null);
  assert.equal(handshakeAnswer(config, request(HEADER)), null);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets and token; describe shows none of them', () => {
  const raw: MetaConfig = {
    provider: 'meta',
    secret: 'app-secret',
    previousSecret: 'old-secret',
    verifyToken: 'tok',
  };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  assert.deepEqual(describeVerifyConfig(raw), { provider: 'meta', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), { provider: 'meta', rotating: false });
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'meta', verifyToken: 't' }, /^Error: verify\.secret: expected a string/],
    [{ provider: 'meta', secret: 's' }, /^Error: verify\.verifyToken: expected a string of 1–1024/],
    [{ provider: 'meta', secret: 's', verifyToken: '' }, /^Error: verify\.verifyToken: /],
    [{ provider: 'meta', secret: 's', verifyToken: 5 }, /^Error: verify\.verifyToken: /],
    [
      { provider: 'meta', secret: 's', verifyToken: 't', previousSecret: '' },
      /^Error: verify\.previousSecret: /,
    ],
    [
      { provider: 'meta', secret: 's', verify_token: 't' },
      /^Error: verify\.verify_token: expected one of the fields provider, secret, previousSecret, verifyToken$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
