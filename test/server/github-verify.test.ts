import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { github, type GithubConfig } from '../../server/verify/github.ts';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

const SECRET = "It's a Secret to Everybody";
const BODY = 'Hello, World!';
const HEADER = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

function request(headers: HeaderPair[], body: string | Buffer = BODY): SignedRequest {
  return {
    method: 'POST',
    url: 'https://relay.example.com/h/ch_1',
    headers,
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    now: 1_700_000_000_000,
  };
}

function sign(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const config: GithubConfig = { provider: 'github', secret: SECRET };

test('the GitHub example vector verifies', () => {
  assert.deepEqual(github.verify(config, request([['X-Hub-Signature-256', HEADER]])), {
    ok: true,
  });
});

test('the header name is matched in any case, among other headers', () => {
  const headers: HeaderPair[] = [
    ['Content-Type', 'application/json'],
    ['X-Hub-Signature', 'sha1=ignored'],
    ['x-hub-signature-256', HEADER],
  ];
  assert.deepEqual(github.verify(config, request(headers)), { ok: true });
});

test('the registry dispatches a github config to the same verifier', () => {
  assert.deepEqual(verifyRequest(config, request([['X-Hub-Signature-256', HEADER]])), {
    ok: true,
  });
  assert.deepEqual(verifyRequest(config, request([['X-Hub-Signature-256', HEADER]], 'x')), {
    ok: false,
    reason: 'signature_mismatch',
  });
});

test('a changed body, a wrong secret or a wrong digest is a mismatch', () => {
  const mismatch = { ok: false, reason: 'signature_mismatch' };
  assert.deepEqual(
    github.verify(config, request([['X-Hub-Signature-256', HEADER]], 'Hello, World?')),
    mismatch,
  );
  assert.deepEqual(
    github.verify(
      { provider: 'github', secret: 'another secret' },
      request([['X-Hub-Signature-256', HEADER]]),
    ),
    mismatch,
  );
  const flipped = `${HEADER.slice(0, -1)}6`;
  assert.deepEqual(github.verify(config, request([['X-Hub-Signature-256', flipped]])), mismatch);
  // An empty or half digest is not a digest at all: malformed, before any comparison.
  const malformed = { ok: false, reason: 'malformed_signature' };
  assert.deepEqual(github.verify(config, request([['X-Hub-Signature-256', 'sha256=']])), malformed);
  assert.deepEqual(
    github.verify(config, request([['X-Hub-Signature-256', HEADER.slice(0, 7 + 32)]])),
    malformed,
  );
});

test('a missing signature header', () => {
  assert.deepEqual(github.verify(config, request([])), { ok: false, reason: 'missing_signature' });
  // The SHA-1 header alone is not enough.
  assert.deepEqual(github.verify(config, request([['X-Hub-Signature', 'sha1=abc']])), {
    ok: false,
    reason: 'missing_signature',
  });
});

test('a signature without the sha256= prefix is malformed', () => {
  const malformed = { ok: false, reason: 'malformed_signature' };
  for (const value of [
    HEADER.slice('sha256='.length),
    `sha1=${HEADER.slice(7)}`,
    `SHA256=${HEADER.slice(7)}`,
    ` ${HEADER}`,
    '',
  ]) {
    assert.deepEqual(
      github.verify(config, request([['X-Hub-Signature-256', value]])),
      malformed,
      value,
    );
  }
});

test('the right digest followed by extra characters does not verify', () => {
  // Node's hex decoder stops at the first non-hex pair; the header as sent is not the signature.
  for (const value of [`${HEADER}zz`, `${HEADER}0`, `${HEADER} `, `${HEADER}00`]) {
    const result = github.verify(config, request([['X-Hub-Signature-256', value]]));
    assert.equal(result.ok, false, `"${value}" was accepted`);
  }
});

test('the body is verified as raw bytes', () => {
  const body = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
  assert.deepEqual(
    github.verify(config, request([['X-Hub-Signature-256', sign(SECRET, body)]], body)),
    { ok: true },
  );
});

test('during a rotation both the current and the previous secret verify', () => {
  const rotating: GithubConfig = {
    provider: 'github',
    secret: 'new-secret',
    previousSecret: SECRET,
  };
  assert.deepEqual(github.verify(rotating, request([['X-Hub-Signature-256', HEADER]])), {
    ok: true,
  });
  assert.deepEqual(
    github.verify(rotating, request([['X-Hub-Signature-256', sign('new-secret', BODY)]])),
    { ok: true },
  );
  assert.deepEqual(
    github.verify(rotating, request([['X-Hub-Signature-256', sign('third-secret', BODY)]])),
    { ok: false, reason: 'signature_mismatch' },
  );
  // Once the rotation ends, the old secret stops working.
  assert.deepEqual(
    github.verify(
      { provider: 'github', secret: 'new-secret' },
      request([['X-Hub-Signature-256', HEADER]]),
    ),
    { ok: false, reason: 'signature_mismatch' },
  );
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps secret and previousSecret; describe shows neither', () => {
  const parsed = parseVerifyConfig(
    { provider: 'github', secret: 'aaa-secret', previousSecret: 'bbb-secret' },
    fail,
  );
  assert.deepEqual(parsed, {
    provider: 'github',
    secret: 'aaa-secret',
    previousSecret: 'bbb-secret',
  });
  const described = describeVerifyConfig({
    provider: 'github',
    secret: 'aaa-secret',
    previousSecret: 'bbb-secret',
  });
  assert.deepEqual(described, { provider: 'github', rotating: true });
  assert.deepEqual(describeVerifyConfig({ provider: 'github', secret: 'aaa-secret' }), {
    provider: 'github',
    rotating: false,
  });
});

test('parse refuses a missing, empty or too long secret and an empty previousSecret', () => {
  assert.throws(() => github.parse({ provider: 'github' }, fail), /^Error: secret: expected/);
  assert.throws(() => github.parse({ provider: 'github', secret: '' }, fail), /^Error: secret: /);
  assert.throws(
    () => github.parse({ provider: 'github', secret: 'x'.repeat(1025) }, fail),
    /^Error: secret: /,
  );
  assert.throws(
    () => github.parse({ provider: 'github', secret: 'x', previousSecret: '' }, fail),
    /^Error: previousSecret: /,
  );
  assert.deepEqual(github.parse({ provider: 'github', secret: 'x'.repeat(1024) }, fail), {
    provider: 'github',
    secret: 'x'.repeat(1024),
  });
});

test('an unknown field (a typo of previousSecret, say) is refused, not ignored', () => {
  assert.throws(
    () =>
      github.parse(
        { provider: 'github', secret: 's', previousSecert: 'old' },
        (field, expected) => {
          throw new Error(`${field}: expected ${expected}`);
        },
      ),
    /previousSecert: expected one of the fields provider, secret, previousSecret/,
  );
});
