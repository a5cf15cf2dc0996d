import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import { shopify, type ShopifyConfig } from '../../server/verify/shopify.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

const SECRET = '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';
const BODY = '{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00"}';
const config: ShopifyConfig = { provider: 'shopify', secret: SECRET };

/** Shopify's documented scheme: base64 HMAC-SHA256 of the raw body with the app's secret. */
function sign(secret: string, body: string | Buffer): string {
  return createHmac('sha256', secret).update(body).digest('base64');
}

function request(header: string | undefined, body: string | Buffer = BODY): SignedRequest {
  const headers: HeaderPair[] = [
    ['Content-Type', 'application/json'],
    ['X-Shopify-Topic', 'orders/create'],
  ];
  if (header !== undefined) headers.push(['X-Shopify-Hmac-Sha256', header]);
  return {
    method: 'POST',
    url: 'https://relay.example.com/h/ch_1',
    headers,
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    now: 1_700_000_000_000,
  };
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test('a signature computed by the documented algorithm verifies', () => {
  assert.deepEqual(shopify.verify(config, request(sign(SECRET, BODY))), OK);
  assert.deepEqual(verifyRequest(config, request(sign(SECRET, BODY))), OK);
  // The header name as Shopify spells it in its docs, and lower case.
  for (const name of ['X-Shopify-Hmac-SHA256', 'x-shopify-hmac-sha256']) {
    const signed: SignedRequest = { ...request(undefined), headers: [[name, sign(SECRET, BODY)]] };
    assert.deepEqual(shopify.verify(config, signed), OK, name);
  }
});

test('the body is verified as raw bytes', () => {
  const body = Buffer.from([0x00, 0xff, 0xfe, 0x7b, 0x7d]);
  assert.deepEqual(shopify.verify(config, request(sign(SECRET, body), body)), OK);
});

test('a changed body, digest or secret is a mismatch', () => {
  assert.deepEqual(shopify.verify(config, request(sign(SECRET, BODY), `${BODY}\n`)), MISMATCH);
  assert.deepEqual(shopify.verify(config, request(sign('other', BODY))), MISMATCH);
  const wrong: ShopifyConfig = { provider: 'shopify', secret: 'other' };
  assert.deepEqual(shopify.verify(wrong, request(sign(SECRET, BODY))), MISMATCH);
  const bytes = Buffer.from(sign(SECRET, BODY), 'base64');
  bytes[0] = bytes[0]! ^ 1;
  assert.deepEqual(shopify.verify(config, request(bytes.toString('base64'))), MISMATCH);
});

test('a missing signature header', () => {
  assert.deepEqual(shopify.verify(config, request(undefined)), {
    ok: false,
    reason: 'missing_signature',
  });
});

test('a malformed signature, including the right one followed by garbage', () => {
  const good = sign(SECRET, BODY);
  const bytes = Buffer.from(good, 'base64');
  // The last character before "=" carries two padding bits; set one and the bytes decode the same.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const last = alphabet.indexOf(good[42]!);
  const loose = `${good.slice(0, 42)}${alphabet[last ^ 1]}=`;
  assert.deepEqual(Buffer.from(loose, 'base64'), bytes);
  for (const value of [
    `${good}zz`,
    `${good}=`,
    `${good}AAAA`,
    `${good} `,
    ` ${good}`.slice(0, 44),
    good.slice(0, -1), // unpadded
    good.replace(/\+/g, '-').replace(/\//g, '_').replace(/=$/, ''), // base64url
    bytes.toString('hex'),
    `sha256=${good}`,
    Buffer.from(bytes.subarray(0, 20)).toString('base64'), // a SHA-1 sized digest
    loose,
    '',
  ]) {
    assert.deepEqual(shopify.verify(config, request(value)), MALFORMED, value);
  }
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating: ShopifyConfig = { provider: 'shopify', secret: 'new', previousSecret: SECRET };
  assert.deepEqual(shopify.verify(rotating, request(sign(SECRET, BODY))), OK);
  assert.deepEqual(shopify.verify(rotating, request(sign('new', BODY))), OK);
  assert.deepEqual(shopify.verify(rotating, request(sign('third', BODY))), MISMATCH);
  const after: ShopifyConfig = { provider: 'shopify', secret: 'new' };
  assert.deepEqual(shopify.verify(after, request(sign(SECRET, BODY))), MISMATCH);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets; describe shows neither', () => {
  const raw: ShopifyConfig = { provider: 'shopify', secret: SECRET, previousSecret: 'old' };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  assert.deepEqual(describeVerifyConfig(raw), { provider: 'shopify', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), { provider: 'shopify', rotating: false });
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'shopify' }, /^Error: verify\.secret: expected a string of 1–1024 characters$/],
    [{ provider: 'shopify', secret: null }, /^Error: verify\.secret: expected a string/],
    [{ provider: 'shopify', secret: 'x', previousSecret: '' }, /^Error: verify\.previousSecret: /],
    [
      { provider: 'shopify', secret: 'x', header: 'X-Other' },
      /^Error: verify\.header: expected one of the fields provider, secret, previousSecret$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
