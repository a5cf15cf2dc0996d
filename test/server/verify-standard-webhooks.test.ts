import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import {
  standardWebhooks,
  type StandardWebhooksConfig,
} from '../../server/verify/standard-webhooks.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';
import { standardWebhooksSignature } from '../../shared/signing.ts';

// The Standard Webhooks published example (provider-vectors.md).
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const TS = '1614265330';
const BODY = '{"test": 2432232314}';
const SIGNATURE = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
const NOW = Number(TS) * 1000 + 2_000;

const config: StandardWebhooksConfig = { provider: 'standard-webhooks', secret: SECRET };
const OTHER = `whsec_${Buffer.from('another key of twenty-four b').toString('base64')}`;

/** The spec's algorithm: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}", key after whsec_. */
function sign(secret: string, id = ID, ts = TS, body = BODY): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;
}

function request(
  signature: string | null,
  options: { id?: string | null; ts?: string | null; body?: string; now?: number } = {},
): SignedRequest {
  const headers: HeaderPair[] = [['content-type', 'application/json']];
  const id = options.id === undefined ? ID : options.id;
  const ts = options.ts === undefined ? TS : options.ts;
  if (id !== null) headers.push(['webhook-id', id]);
  if (ts !== null) headers.push(['webhook-timestamp', ts]);
  if (signature !== null) headers.push(['webhook-signature', signature]);
  return {
    method: 'POST',
    url: 'https://relay.example.com/h/ch_1',
    headers,
    body: Buffer.from(options.body ?? BODY),
    now: options.now ?? NOW,
  };
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test('the published example verifies', () => {
  assert.equal(sign(SECRET), SIGNATURE);
  assert.equal(standardWebhooksSignature(SECRET, ID, Number(TS), Buffer.from(BODY)), SIGNATURE);
  assert.deepEqual(standardWebhooks.verify(config, request(SIGNATURE)), OK);
  assert.deepEqual(verifyRequest(config, request(SIGNATURE)), OK);
  // Header names in any case.
  const upper: SignedRequest = {
    ...request(null),
    headers: [
      ['Webhook-Id', ID],
      ['Webhook-Timestamp', TS],
      ['Webhook-Signature', SIGNATURE],
    ],
  };
  assert.deepEqual(standardWebhooks.verify(config, upper), OK);
});

test("signatures made by the spec's own library verify", () => {
  const library = new Webhook(SECRET);
  assert.equal(library.sign(ID, new Date(Number(TS) * 1000), BODY), SIGNATURE);
  const id = 'msg_2Lh9KRb0pzN4LePd3XiA4ivaxKm';
  const ts = Number(TS) + 120;
  const body = '{"type":"invoice.paid","data":{"id":"in_1","amount":990}}';
  const signature = library.sign(id, new Date(ts * 1000), body);
  const signed = request(signature, { id, ts: String(ts), body });
  assert.deepEqual(standardWebhooks.verify(config, signed), OK);
  assert.deepEqual(
    standardWebhooks.verify(config, request(signature, { id, ts: String(ts) })),
    MISMATCH,
  );
});

test('a secret without the whsec_ prefix is the same key', () => {
  const bare = { ...config, secret: SECRET.slice('whsec_'.length) };
  assert.deepEqual(standardWebhooks.verify(bare, request(SIGNATURE)), OK);
});

test('several signatures: any v1 entry matching is enough; other versions are ignored', () => {
  const other = sign(OTHER);
  const v1a = `v1a,${Buffer.alloc(64, 7).toString('base64')}`;
  for (const header of [
    `${other} ${SIGNATURE}`,
    `${SIGNATURE} ${other}`,
    `${v1a} ${SIGNATURE}`,
    `v2,abc ${SIGNATURE}`,
  ]) {
    assert.deepEqual(standardWebhooks.verify(config, request(header)), OK, header);
  }
  assert.deepEqual(standardWebhooks.verify(config, request(`${other} ${other}`)), MISMATCH);
  // A v1 signature under another version's name does not count.
  assert.deepEqual(standardWebhooks.verify(config, request(`v2,${SIGNATURE.slice(3)}`)), {
    ok: false,
    reason: 'missing_signature',
  });
});

test('a changed body, id, timestamp, digest or secret is a mismatch', () => {
  const verify = (signature: string, options = {}) =>
    standardWebhooks.verify(config, request(signature, options));
  assert.deepEqual(verify(SIGNATURE, { body: '{"test": 2432232315}' }), MISMATCH);
  assert.deepEqual(verify(SIGNATURE, { id: 'msg_other' }), MISMATCH);
  assert.deepEqual(verify(SIGNATURE, { ts: String(Number(TS) + 1) }), MISMATCH);
  const bytes = Buffer.from(SIGNATURE.slice(3), 'base64');
  bytes[0] = bytes[0]! ^ 1;
  assert.deepEqual(verify(`v1,${bytes.toString('base64')}`), MISMATCH);
  assert.deepEqual(verify(sign(OTHER)), MISMATCH);
  // The key is the decoded base64, not the text: an HMAC keyed with the string fails.
  const textKey = createHmac('sha256', SECRET).update(`${ID}.${TS}.${BODY}`).digest('base64');
  assert.deepEqual(verify(`v1,${textKey}`), MISMATCH);
});

test('a missing signature, id or timestamp', () => {
  assert.deepEqual(standardWebhooks.verify(config, request(null)), {
    ok: false,
    reason: 'missing_signature',
  });
  assert.deepEqual(standardWebhooks.verify(config, request(SIGNATURE, { id: null })), {
    ok: false,
    reason: 'missing_id',
  });
  assert.deepEqual(standardWebhooks.verify(config, request(SIGNATURE, { ts: null })), {
    ok: false,
    reason: 'missing_timestamp',
  });
  for (const ts of ['', 'abc', '1614265330.0', '-1614265330', '2021-02-25T15:02:10Z']) {
    assert.deepEqual(
      standardWebhooks.verify(config, request(sign(SECRET, ID, ts), { ts })),
      { ok: false, reason: 'malformed_timestamp' },
      ts,
    );
  }
});

test('a malformed signature list, including the right one followed by garbage', () => {
  const b64 = SIGNATURE.slice(3);
  for (const value of [
    `${SIGNATURE}zz`,
    `${SIGNATURE}=`,
    `${SIGNATURE}AAAA`,
    `${SIGNATURE} `,
    `${SIGNATURE}  ${SIGNATURE}`,
    `${SIGNATURE},${SIGNATURE}`,
    `${SIGNATURE} garbage`,
    b64,
    `v1=${b64}`,
    `v1,${b64.slice(0, -1)}`,
    `v1,${Buffer.from(b64, 'base64').toString('hex')}`,
    'v1,',
    '',
  ]) {
    assert.deepEqual(standardWebhooks.verify(config, request(value)), MALFORMED, value);
  }
});

test('the 5-minute window, both ways: 300 s away verifies, 300.001 s does not', () => {
  const at = Number(TS) * 1000;
  const late = { ok: false, reason: 'timestamp_out_of_range' };
  const verifyAt = (now: number) => standardWebhooks.verify(config, request(SIGNATURE, { now }));
  assert.deepEqual(verifyAt(at + 300_000), OK);
  assert.deepEqual(verifyAt(at + 300_001), late);
  assert.deepEqual(verifyAt(at - 300_000), OK);
  assert.deepEqual(verifyAt(at - 300_001), late);
  assert.deepEqual(verifyAt(1_700_000_000_000), late);
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating = { ...config, secret: OTHER, previousSecret: SECRET };
  assert.deepEqual(standardWebhooks.verify(rotating, request(SIGNATURE)), OK);
  assert.deepEqual(standardWebhooks.verify(rotating, request(sign(OTHER))), OK);
  const third = `whsec_${Buffer.from('a third key, twenty-four.').toString('base64')}`;
  assert.deepEqual(standardWebhooks.verify(rotating, request(sign(third))), MISMATCH);
  assert.deepEqual(
    standardWebhooks.verify({ ...config, secret: OTHER }, request(SIGNATURE)),
    MISMATCH,
  );
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets; describe shows neither', () => {
  const raw: StandardWebhooksConfig = {
    provider: 'standard-webhooks',
    secret: SECRET,
    previousSecret: OTHER,
  };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  const described = describeVerifyConfig(raw);
  assert.deepEqual(described, { provider: 'standard-webhooks', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), {
    provider: 'standard-webhooks',
    rotating: false,
  });
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'standard-webhooks' }, /^Error: verify\.secret: expected a string of 1–1024/],
    [
      { provider: 'standard-webhooks', secret: 'whsec_' },
      /^Error: verify\.secret: expected "whsec_" followed by the base64 key$/,
    ],
    [{ provider: 'standard-webhooks', secret: 'whsec_not base64!' }, /^Error: verify\.secret: /],
    [{ provider: 'standard-webhooks', secret: 'whsec_abc_-' }, /^Error: verify\.secret: /],
    [
      { provider: 'standard-webhooks', secret: SECRET, previousSecret: 'whsec_%%%' },
      /^Error: verify\.previousSecret: expected "whsec_" followed by the base64 key$/,
    ],
    [
      { provider: 'standard-webhooks', secret: SECRET, tolerance: 1 },
      /^Error: verify\.tolerance: expected one of the fields provider, secret, previousSecret$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
  // Unpadded base64 is fine: secrets are pasted by hand.
  const unpadded = `whsec_${Buffer.from('twenty-five bytes of key.').toString('base64').replace(/=+$/, '')}`;
  assert.equal(
    parseVerifyConfig({ provider: 'standard-webhooks', secret: unpadded }, fail)?.provider,
    'standard-webhooks',
  );
});
