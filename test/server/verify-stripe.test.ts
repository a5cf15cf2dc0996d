import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import Stripe from 'stripe';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import { stripe, type StripeConfig } from '../../server/verify/stripe.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

const SECRET = 'whsec_5c1dbb2d0f5c4b8e9a7d3e6f1a2b3c4d';
const T = 1_700_000_000;
const NOW = T * 1000;
const BODY = '{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}';
const config: StripeConfig = { provider: 'stripe', secret: SECRET };

/** Stripe's documented scheme, as its library's generateTestHeaderString computes it. */
function v1(secret: string, timestamp: number | string, body: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

function testHeader(secret = SECRET, timestamp = T, body: string | Buffer = BODY): string {
  return `t=${timestamp},v1=${v1(secret, timestamp, body)}`;
}

function request(header: string | undefined, body: string | Buffer = BODY, now = NOW) {
  const headers: HeaderPair[] = [['Content-Type', 'application/json; charset=utf-8']];
  if (header !== undefined) headers.push(['Stripe-Signature', header]);
  const signed: SignedRequest = {
    method: 'POST',
    url: 'https://relay.example.com/h/ch_1',
    headers,
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    now,
  };
  return signed;
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test('a header made the way stripe.webhooks.generateTestHeaderString makes it verifies', () => {
  assert.deepEqual(stripe.verify(config, request(testHeader())), OK);
  // The header name in any case, and through the registry.
  const lower: SignedRequest = {
    ...request(undefined),
    headers: [['stripe-signature', testHeader()]],
  };
  assert.deepEqual(verifyRequest(config, lower), OK);
  assert.deepEqual(verifyRequest(config, request(testHeader(), `${BODY} `)), MISMATCH);
});

test("a header made by Stripe's own library verifies", () => {
  for (const [payload, timestamp] of [
    [BODY, T],
    ['{"id":"evt_2","data":{"object":{"amount":2000,"currency":"eur"}}}', T - 299],
    ['', T + 299],
  ] as const) {
    const header = Stripe.webhooks.generateTestHeaderString({ payload, secret: SECRET, timestamp });
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.deepEqual(stripe.verify(config, request(header, payload)), OK, header);
    assert.deepEqual(stripe.verify(config, request(header, `${payload}x`)), MISMATCH, header);
  }
});

test('the key is the whole whsec_ string, not its base64-decoded part', () => {
  const decoded = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const wrongKey = createHmac('sha256', decoded).update(`${T}.${BODY}`).digest('hex');
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${wrongKey}`)), MISMATCH);
  const withoutPrefix = v1(SECRET.slice('whsec_'.length), T, BODY);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${withoutPrefix}`)), MISMATCH);
});

test('the body is verified as raw bytes', () => {
  const body = Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x00, 0xff, 0x7d]);
  assert.deepEqual(stripe.verify(config, request(testHeader(SECRET, T, body), body)), OK);
});

test('several v1 signatures: any one matching is enough; v0 and unknown schemes are ignored', () => {
  const good = v1(SECRET, T, BODY);
  const other = v1('whsec_other', T, BODY);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${other},v1=${good}`)), OK);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${good},v1=${other}`)), OK);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${good},v0=${other}`)), OK);
  assert.deepEqual(stripe.verify(config, request(`v1=${good},t=${T}`)), OK);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v0=${good},v1=${other}`)), MISMATCH);
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${other},v1=${other}`)), MISMATCH);
  // A v0 (or any other scheme) alone is no v1 signature at all.
  assert.deepEqual(stripe.verify(config, request(`t=${T},v0=${good}`)), {
    ok: false,
    reason: 'missing_signature',
  });
});

test('a changed body, timestamp, digest or secret is a mismatch', () => {
  assert.deepEqual(stripe.verify(config, request(testHeader(), '{}')), MISMATCH);
  // The signature covers t: the same digest under another t fails.
  const good = v1(SECRET, T, BODY);
  assert.deepEqual(stripe.verify(config, request(`t=${T + 1},v1=${good}`)), MISMATCH);
  const flipped = good.slice(0, -1) + (good.endsWith('0') ? '1' : '0');
  assert.deepEqual(stripe.verify(config, request(`t=${T},v1=${flipped}`)), MISMATCH);
  assert.deepEqual(stripe.verify(config, request(testHeader('whsec_wrong'))), MISMATCH);
  assert.deepEqual(
    stripe.verify({ provider: 'stripe', secret: 'whsec_wrong' }, request(testHeader())),
    MISMATCH,
  );
});

test('a missing header, timestamp or signature', () => {
  assert.deepEqual(stripe.verify(config, request(undefined)), {
    ok: false,
    reason: 'missing_signature',
  });
  assert.deepEqual(stripe.verify(config, request(`v1=${v1(SECRET, T, BODY)}`)), {
    ok: false,
    reason: 'missing_timestamp',
  });
  assert.deepEqual(stripe.verify(config, request(`t=${T}`)), {
    ok: false,
    reason: 'missing_signature',
  });
  for (const t of ['abc', '-5', '1.5', '1e9', '0x10', ' 1700000000']) {
    assert.deepEqual(
      stripe.verify(config, request(`t=${t},v1=${v1(SECRET, t, BODY)}`)),
      { ok: false, reason: 'malformed_timestamp' },
      t,
    );
  }
});

test('a malformed header, including the right signature followed by garbage', () => {
  const good = testHeader();
  for (const value of [
    `${good}zz`,
    `${good}0`,
    `${good}00`,
    `${good} `,
    `${good},`,
    `,${good}`,
    `t=${T}, v1=${v1(SECRET, T, BODY)}`,
    `t=${T},v1=${v1(SECRET, T, BODY).slice(0, 63)}`,
    `t=${T},v1=${v1(SECRET, T, BODY).slice(0, 62)}`,
    `t=${T},v1=`,
    `t=${T},V1=${v1(SECRET, T, BODY)}`,
    `t=${T},v1:${v1(SECRET, T, BODY)}`,
    `t=${T},t=${T},v1=${v1(SECRET, T, BODY)}`,
    `${good},garbage`,
    '',
  ]) {
    assert.deepEqual(stripe.verify(config, request(value)), MALFORMED, value);
  }
});

test('the 5-minute window, both ways: 300 s away verifies, 300.001 s does not', () => {
  const header = testHeader();
  const late = { ok: false, reason: 'timestamp_out_of_range' };
  assert.deepEqual(stripe.verify(config, request(header, BODY, NOW + 300_000)), OK);
  assert.deepEqual(stripe.verify(config, request(header, BODY, NOW + 300_001)), late);
  assert.deepEqual(stripe.verify(config, request(header, BODY, NOW - 300_000)), OK);
  assert.deepEqual(stripe.verify(config, request(header, BODY, NOW - 300_001)), late);
  // A replay days later, with a valid signature, is refused.
  assert.deepEqual(stripe.verify(config, request(header, BODY, NOW + 3 * 86_400_000)), late);
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating: StripeConfig = {
    provider: 'stripe',
    secret: 'whsec_new',
    previousSecret: SECRET,
  };
  assert.deepEqual(stripe.verify(rotating, request(testHeader(SECRET))), OK);
  assert.deepEqual(stripe.verify(rotating, request(testHeader('whsec_new'))), OK);
  assert.deepEqual(stripe.verify(rotating, request(testHeader('whsec_third'))), MISMATCH);
  const after: StripeConfig = { provider: 'stripe', secret: 'whsec_new' };
  assert.deepEqual(stripe.verify(after, request(testHeader(SECRET))), MISMATCH);
  assert.deepEqual(stripe.verify(after, request(testHeader('whsec_new'))), OK);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets; describe shows neither', () => {
  const raw: StripeConfig = {
    provider: 'stripe',
    secret: 'whsec_aaa',
    previousSecret: 'whsec_bbb',
  };
  const parsed = parseVerifyConfig({ ...raw }, fail);
  assert.deepEqual(parsed, raw);
  assert.deepEqual(describeVerifyConfig(raw), { provider: 'stripe', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), { provider: 'stripe', rotating: false });
  assert.equal(JSON.stringify(describeVerifyConfig(raw)).includes('whsec_'), false);
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'stripe' }, /^Error: verify\.secret: expected a string of 1–1024 characters$/],
    [{ provider: 'stripe', secret: '' }, /^Error: verify\.secret: expected a string/],
    [{ provider: 'stripe', secret: 42 }, /^Error: verify\.secret: expected a string/],
    [{ provider: 'stripe', secret: 'sk_live_123' }, /^Error: verify\.secret: expected .*"whsec_"/],
    [
      { provider: 'stripe', secret: 'whsec_a', previousSecret: 'abc' },
      /^Error: verify\.previousSecret: expected .*"whsec_"/,
    ],
    [
      { provider: 'stripe', secret: 'whsec_a', previousSecret: '' },
      /^Error: verify\.previousSecret: expected a string/,
    ],
    [
      { provider: 'stripe', secret: 'whsec_a', tolerance: 600 },
      /^Error: verify\.tolerance: expected one of the fields provider, secret, previousSecret$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
