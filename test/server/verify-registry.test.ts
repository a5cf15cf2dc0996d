import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  describeVerifyConfig,
  parseVerifyConfig,
  verifiers,
  verifyRequest,
} from '../../server/verify/index.ts';
import type { Fail } from '../../shared/fields.ts';

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

const SECRET = 'whsec_U0VDUkVULUtFWS1ORVZFUi1TSE9XTg==';
const PREVIOUS = 'whsec_UFJFVklPVVMtS0VZLU5FVkVSLVNIT1dO';
const TOKEN = 'VERIFY-TOKEN-NEVER-SHOWN';

/** One valid config per provider, each holding every secret it can. */
const CONFIGS: Record<string, Record<string, unknown>> = {
  github: { provider: 'github', secret: SECRET, previousSecret: PREVIOUS },
  stripe: { provider: 'stripe', secret: SECRET, previousSecret: PREVIOUS },
  slack: { provider: 'slack', secret: SECRET, previousSecret: PREVIOUS },
  shopify: { provider: 'shopify', secret: SECRET, previousSecret: PREVIOUS },
  twilio: { provider: 'twilio', secret: SECRET, previousSecret: PREVIOUS },
  meta: { provider: 'meta', secret: SECRET, previousSecret: PREVIOUS, verifyToken: TOKEN },
  'standard-webhooks': { provider: 'standard-webhooks', secret: SECRET, previousSecret: PREVIOUS },
  hmac: {
    provider: 'hmac',
    secret: SECRET,
    previousSecret: PREVIOUS,
    header: 'X-Signature',
    algorithm: 'sha512',
    encoding: 'base64',
    prefix: 'v1=',
  },
};

test('every provider of the design is registered, and no other', () => {
  assert.deepEqual([...verifiers.keys()].sort(), Object.keys(CONFIGS).sort());
  assert.throws(
    () => parseVerifyConfig({ provider: 'paypal', secret: 'x' }, fail),
    /^Error: verify\.provider: expected one of github, stripe, slack, shopify, twilio, meta, standard-webhooks, hmac$/,
  );
});

test('each provider parses its config unchanged, and no answer ever shows a secret', () => {
  for (const [provider, raw] of Object.entries(CONFIGS)) {
    const parsed = parseVerifyConfig({ ...raw }, fail);
    assert.deepEqual(parsed, raw, provider);
    const described = describeVerifyConfig(parsed);
    assert.equal(described?.['provider'], provider);
    assert.equal(described?.['rotating'], true, provider);
    const text = JSON.stringify(described);
    for (const secret of [SECRET, PREVIOUS, TOKEN, 'U0VDUkVU', 'whsec_']) {
      assert.equal(text.includes(secret), false, `${provider} shows ${secret}: ${text}`);
    }
    for (const key of ['secret', 'previousSecret', 'verifyToken']) {
      assert.equal(described !== null && key in described, false, `${provider} has ${key}`);
    }
  }
});

test('an unsigned request is refused by every provider', () => {
  for (const [provider, raw] of Object.entries(CONFIGS)) {
    const parsed = parseVerifyConfig({ ...raw }, fail);
    assert.ok(parsed);
    const result = verifyRequest(parsed, {
      method: 'POST',
      url: 'https://relay.example.com/h/ch_1',
      headers: [['Content-Type', 'application/json']],
      body: Buffer.from('{}'),
      now: 1_700_000_000_000,
    });
    assert.deepEqual(result, { ok: false, reason: 'missing_signature' }, provider);
  }
});
