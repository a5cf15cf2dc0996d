import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { test } from 'node:test';
import twilioLibrary from 'twilio';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import { twilio, type TwilioConfig } from '../../server/verify/twilio.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

// Twilio's published example (provider-vectors.md).
const TOKEN = '12345';
const URL_ = 'https://mycompany.com/myapp.php?foo=1&bar=2';
const PARAMS: [string, string][] = [
  ['CallSid', 'CA1234567890ABCDE'],
  ['Caller', '+12349013030'],
  ['Digits', '1234'],
  ['From', '+12349013030'],
  ['To', '+18005551212'],
];
const SIGNATURE = '0/KCTR6DLpKmkAf8muzZqo1nDgQ=';
const FORM_BODY = new URLSearchParams(PARAMS).toString();

const config: TwilioConfig = { provider: 'twilio', secret: TOKEN };

const FORM = 'application/x-www-form-urlencoded';

function request(
  signature: string | undefined,
  options: { url?: string; body?: string; contentType?: string; method?: string } = {},
): SignedRequest {
  const headers: HeaderPair[] = [];
  const contentType = options.contentType ?? FORM;
  if (contentType !== '') headers.push(['Content-Type', contentType]);
  if (signature !== undefined) headers.push(['X-Twilio-Signature', signature]);
  return {
    method: options.method ?? 'POST',
    url: options.url ?? URL_,
    headers,
    body: Buffer.from(options.body ?? FORM_BODY),
    now: 1_700_000_000_000,
  };
}

/** Twilio's documented algorithm: the URL, then each name and value sorted by name. */
function sign(token: string, url: string, params: [string, string][] = []): string {
  const data = [...params]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .reduce((acc, [name, value]) => acc + name + value, url);
  return createHmac('sha1', token).update(data).digest('base64');
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test("Twilio's published example verifies", () => {
  assert.equal(sign(TOKEN, URL_, PARAMS), SIGNATURE);
  assert.deepEqual(twilio.verify(config, request(SIGNATURE)), OK);
  assert.deepEqual(verifyRequest(config, request(SIGNATURE)), OK);
  // A charset parameter on the content type changes nothing.
  const utf8 = request(SIGNATURE, { contentType: `${FORM}; charset=utf-8` });
  assert.deepEqual(twilio.verify(config, utf8), OK);
});

test("signatures made by Twilio's own library verify", () => {
  const params = Object.fromEntries(PARAMS);
  assert.equal(twilioLibrary.getExpectedTwilioSignature(TOKEN, URL_, params), SIGNATURE);
  const url = 'https://relay.example.com/h/ch_1/sms?tenant=a%20b';
  const extra = { ...params, Body: 'héllo & goodbye=1', NumMedia: '0' };
  const signature = twilioLibrary.getExpectedTwilioSignature(TOKEN, url, extra);
  const body = new URLSearchParams(extra).toString();
  assert.deepEqual(twilio.verify(config, request(signature, { url, body })), OK);
  // A JSON body, as validateRequestWithBody expects it.
  const json = '{"ParentAccountSid":"AC123","Payload":{"x":1}}';
  const hashed = `${url}&bodySHA256=${createHash('sha256').update(json).digest('hex')}`;
  const jsonSignature = twilioLibrary.getExpectedTwilioSignature(TOKEN, hashed, {});
  assert.equal(twilioLibrary.validateRequestWithBody(TOKEN, jsonSignature, hashed, json), true);
  const jsonRequest = request(jsonSignature, {
    url: hashed,
    body: json,
    contentType: 'application/json',
  });
  assert.deepEqual(twilio.verify(config, jsonRequest), OK);
});

test('parameters are sorted by name and decoded, whatever order and encoding they arrive in', () => {
  const reversed = new URLSearchParams([...PARAMS].reverse()).toString();
  assert.deepEqual(twilio.verify(config, request(SIGNATURE, { body: reversed })), OK);
  // "%2B" and a literal "+" differ: "+" decodes to a space, so the value changes.
  const plus = FORM_BODY.replace('Caller=%2B', 'Caller=+');
  assert.notEqual(plus, FORM_BODY);
  assert.deepEqual(twilio.verify(config, request(SIGNATURE, { body: plus })), MISMATCH);
  // A repeated name: its values sorted, as Twilio's libraries do.
  const repeated: [string, string][] = [
    ...PARAMS,
    ['MediaUrl', 'https://b'],
    ['MediaUrl', 'https://a'],
  ];
  const signature = sign(TOKEN, URL_, [
    ...PARAMS,
    ['MediaUrl', 'https://a'],
    ['MediaUrl', 'https://b'],
  ]);
  const body = new URLSearchParams(repeated).toString();
  assert.deepEqual(twilio.verify(config, request(signature, { body })), OK);
});

test('a changed parameter, URL, digest or token is a mismatch', () => {
  const changed = FORM_BODY.replace('Digits=1234', 'Digits=1235');
  assert.deepEqual(twilio.verify(config, request(SIGNATURE, { body: changed })), MISMATCH);
  const added = `${FORM_BODY}&Extra=1`;
  assert.deepEqual(twilio.verify(config, request(SIGNATURE, { body: added })), MISMATCH);
  for (const url of [
    'https://mycompany.com/myapp.php?foo=1&bar=3',
    'https://mycompany.com/myapp.php?bar=2&foo=1',
    'http://mycompany.com/myapp.php?foo=1&bar=2',
    'https://evil.example/myapp.php?foo=1&bar=2',
    'https://mycompany.com:8443/myapp.php?foo=1&bar=2',
  ]) {
    assert.deepEqual(twilio.verify(config, request(SIGNATURE, { url })), MISMATCH, url);
  }
  const bytes = Buffer.from(SIGNATURE, 'base64');
  bytes[19] = bytes[19]! ^ 1;
  assert.deepEqual(twilio.verify(config, request(bytes.toString('base64'))), MISMATCH);
  assert.deepEqual(
    twilio.verify({ provider: 'twilio', secret: '54321' }, request(SIGNATURE)),
    MISMATCH,
  );
});

test("the URL with or without the scheme's default port verifies, as Twilio's libraries allow", () => {
  const withPort = 'https://mycompany.com:443/myapp.php?foo=1&bar=2';
  assert.deepEqual(twilio.verify(config, request(SIGNATURE, { url: withPort })), OK);
  const signedWithPort = sign(TOKEN, withPort, PARAMS);
  assert.deepEqual(twilio.verify(config, request(signedWithPort)), OK);
});

test('a GET is signed over its URL alone', () => {
  const url = `https://relay.example.com/h/ch_1/voice?${FORM_BODY}`;
  const signed = request(sign(TOKEN, url), { url, method: 'GET', body: '', contentType: '' });
  assert.deepEqual(twilio.verify(config, signed), OK);
  const other = { ...signed, url: url.replace('Digits=1234', 'Digits=9') };
  assert.deepEqual(twilio.verify(config, other), MISMATCH);
});

test('a JSON body is covered by the bodySHA256 of the signed URL', () => {
  const body = '{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}';
  const hash = createHash('sha256').update(body).digest('hex');
  const url = `https://relay.example.com/h/ch_1/events?bodySHA256=${hash}`;
  const json = { url, body, contentType: 'application/json' };
  const signature = sign(TOKEN, url);
  assert.deepEqual(twilio.verify(config, request(signature, json)), OK);
  // Another body under the same signed URL.
  assert.deepEqual(twilio.verify(config, request(signature, { ...json, body: `${body} ` })), {
    ok: false,
    reason: 'body_hash_mismatch',
  });
  // A hash that is no hash.
  const bad = { ...json, url: `${url.slice(0, -1)}z` };
  assert.deepEqual(twilio.verify(config, request(sign(TOKEN, bad.url), bad)), {
    ok: false,
    reason: 'body_hash_mismatch',
  });
  // The right hash, but the signature is over another URL.
  const other = { ...json, url: `${url}&x=1` };
  assert.deepEqual(twilio.verify(config, request(signature, other)), MISMATCH);
  // A JSON body without a hash in the URL: nothing would cover it.
  const unhashed = { ...json, url: 'https://relay.example.com/h/ch_1/events' };
  assert.deepEqual(twilio.verify(config, request(sign(TOKEN, unhashed.url), unhashed)), {
    ok: false,
    reason: 'missing_body_hash',
  });
});

test('a missing signature header', () => {
  assert.deepEqual(twilio.verify(config, request(undefined)), {
    ok: false,
    reason: 'missing_signature',
  });
});

test('a malformed signature, including the right one followed by garbage', () => {
  for (const value of [
    `${SIGNATURE}zz`,
    `${SIGNATURE}=`,
    `${SIGNATURE}AAAA`,
    `${SIGNATURE} `,
    SIGNATURE.slice(0, -1),
    Buffer.from(SIGNATURE, 'base64').toString('hex'),
    SIGNATURE.replace('/', '_'),
    '',
  ]) {
    assert.deepEqual(twilio.verify(config, request(value)), MALFORMED, value);
  }
});

test('during a rotation both tokens verify; afterwards only the new one', () => {
  const rotating: TwilioConfig = { provider: 'twilio', secret: 'new-token', previousSecret: TOKEN };
  assert.deepEqual(twilio.verify(rotating, request(SIGNATURE)), OK);
  assert.deepEqual(twilio.verify(rotating, request(sign('new-token', URL_, PARAMS))), OK);
  assert.deepEqual(twilio.verify(rotating, request(sign('third', URL_, PARAMS))), MISMATCH);
  const after: TwilioConfig = { provider: 'twilio', secret: 'new-token' };
  assert.deepEqual(twilio.verify(after, request(SIGNATURE)), MISMATCH);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets; describe shows neither', () => {
  const raw: TwilioConfig = { provider: 'twilio', secret: TOKEN, previousSecret: 'old-token' };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  assert.deepEqual(describeVerifyConfig(raw), { provider: 'twilio', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), { provider: 'twilio', rotating: false });
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'twilio' }, /^Error: verify\.secret: expected a string of 1–1024 characters$/],
    [{ provider: 'twilio', secret: ['12345'] }, /^Error: verify\.secret: expected a string/],
    [{ provider: 'twilio', secret: 'x', previousSecret: 1 }, /^Error: verify\.previousSecret: /],
    [
      { provider: 'twilio', secret: 'x', authToken: 'y' },
      /^Error: verify\.authToken: expected one of the fields provider, secret, previousSecret$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
