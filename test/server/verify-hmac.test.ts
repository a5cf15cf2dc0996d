import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { genericHmac, type HmacConfig } from '../../server/verify/hmac.ts';
import {
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

const SECRET = 'generic-shared-secret';
const BODY = '{"event":"build.finished","id":42}';
const config: HmacConfig = {
  provider: 'hmac',
  secret: SECRET,
  header: 'X-Signature',
  algorithm: 'sha256',
  encoding: 'hex',
};

function digest(
  algorithm: string,
  encoding: 'hex' | 'base64',
  secret: string,
  body: string | Buffer,
): string {
  return createHmac(algorithm, secret).update(body).digest(encoding);
}

function request(
  header: [string, string] | undefined,
  body: string | Buffer = BODY,
): SignedRequest {
  const headers: HeaderPair[] = [['Content-Type', 'application/json']];
  if (header !== undefined) headers.push(header);
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

test('every algorithm and encoding verifies a signature computed with node:crypto', () => {
  for (const algorithm of ['sha1', 'sha256', 'sha512'] as const) {
    for (const encoding of ['hex', 'base64'] as const) {
      const c: HmacConfig = { ...config, algorithm, encoding };
      const good = digest(algorithm, encoding, SECRET, BODY);
      const label = `${algorithm}/${encoding}`;
      assert.deepEqual(genericHmac.verify(c, request(['X-Signature', good])), OK, label);
      assert.deepEqual(verifyRequest(c, request(['x-signature', good])), OK, label);
      assert.deepEqual(
        genericHmac.verify(c, request(['X-Signature', good], `${BODY} `)),
        MISMATCH,
        label,
      );
      const wrong = digest(algorithm, encoding, 'other', BODY);
      assert.deepEqual(genericHmac.verify(c, request(['X-Signature', wrong])), MISMATCH, label);
      // Trailing garbage after the right digest, and a digest of another algorithm's size.
      for (const bad of [`${good}zz`, `${good}0`, `${good}==`, `${good} `, good.slice(0, -2)]) {
        assert.deepEqual(
          genericHmac.verify(c, request(['X-Signature', bad])),
          MALFORMED,
          `${label} ${bad}`,
        );
      }
      const otherSize = digest(algorithm === 'sha1' ? 'sha256' : 'sha1', encoding, SECRET, BODY);
      assert.deepEqual(
        genericHmac.verify(c, request(['X-Signature', otherSize])),
        MALFORMED,
        label,
      );
    }
  }
});

test("GitHub's published example through a generic config with a prefix", () => {
  const github: HmacConfig = {
    provider: 'hmac',
    secret: "It's a Secret to Everybody",
    header: 'X-Hub-Signature-256',
    algorithm: 'sha256',
    encoding: 'hex',
    prefix: 'sha256=',
  };
  const header = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
  const signed = (value: string) => request(['X-Hub-Signature-256', value], 'Hello, World!');
  assert.deepEqual(genericHmac.verify(github, signed(header)), OK);
  // Without, or with another, prefix: malformed; the prefix is matched exactly.
  for (const value of [
    header.slice(7),
    `SHA256=${header.slice(7)}`,
    `sha1=${header.slice(7)}`,
    ` ${header}`,
    `${header}zz`,
  ]) {
    assert.deepEqual(genericHmac.verify(github, signed(value)), MALFORMED, value);
  }
});

test('the body is verified as raw bytes', () => {
  const body = Buffer.from([0xff, 0x00, 0xfe]);
  const good = digest('sha256', 'hex', SECRET, body);
  assert.deepEqual(genericHmac.verify(config, request(['X-Signature', good], body)), OK);
});

test('a missing signature header: only the configured header counts', () => {
  const missing = { ok: false, reason: 'missing_signature' };
  assert.deepEqual(genericHmac.verify(config, request(undefined)), missing);
  const good = digest('sha256', 'hex', SECRET, BODY);
  assert.deepEqual(genericHmac.verify(config, request(['X-Signature-256', good])), missing);
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating: HmacConfig = { ...config, secret: 'new', previousSecret: SECRET };
  const old = request(['X-Signature', digest('sha256', 'hex', SECRET, BODY)]);
  assert.deepEqual(genericHmac.verify(rotating, old), OK);
  assert.deepEqual(
    genericHmac.verify(rotating, request(['X-Signature', digest('sha256', 'hex', 'new', BODY)])),
    OK,
  );
  assert.deepEqual(
    genericHmac.verify(rotating, request(['X-Signature', digest('sha256', 'hex', 'third', BODY)])),
    MISMATCH,
  );
  assert.deepEqual(genericHmac.verify({ ...config, secret: 'new' }, old), MISMATCH);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps every field; describe shows all but the secrets', () => {
  const raw: HmacConfig = { ...config, previousSecret: 'old-secret', prefix: 'sha256=' };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  assert.deepEqual(describeVerifyConfig(raw), {
    provider: 'hmac',
    rotating: true,
    header: 'X-Signature',
    algorithm: 'sha256',
    encoding: 'hex',
    prefix: 'sha256=',
  });
  assert.deepEqual(describeVerifyConfig(config), {
    provider: 'hmac',
    rotating: false,
    header: 'X-Signature',
    algorithm: 'sha256',
    encoding: 'hex',
  });
});

test('parse names each bad field and what it expected', () => {
  const base = {
    provider: 'hmac',
    secret: 's',
    header: 'X-Sig',
    algorithm: 'sha1',
    encoding: 'hex',
  };
  const { secret: _s, ...noSecret } = base;
  const { header: _h, ...noHeader } = base;
  const { algorithm: _a, ...noAlgorithm } = base;
  const { encoding: _e, ...noEncoding } = base;
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [noSecret, /^Error: verify\.secret: expected a string of 1–1024 characters$/],
    [{ ...base, previousSecret: '' }, /^Error: verify\.previousSecret: /],
    [noHeader, /^Error: verify\.header: expected a string of 1–128 characters$/],
    [{ ...base, header: 'X Sig' }, /^Error: verify\.header: expected an HTTP header name/],
    [{ ...base, header: 'X-Sig:' }, /^Error: verify\.header: expected an HTTP header name/],
    [noAlgorithm, /^Error: verify\.algorithm: expected one of "sha1", "sha256", "sha512"$/],
    [
      { ...base, algorithm: 'md5' },
      /^Error: verify\.algorithm: expected one of "sha1", "sha256", "sha512"$/,
    ],
    [{ ...base, algorithm: 'SHA256' }, /^Error: verify\.algorithm: /],
    [noEncoding, /^Error: verify\.encoding: expected one of "hex", "base64"$/],
    [
      { ...base, encoding: 'base64url' },
      /^Error: verify\.encoding: expected one of "hex", "base64"$/,
    ],
    [{ ...base, prefix: '' }, /^Error: verify\.prefix: expected a string of 1–64 characters$/],
    [{ ...base, prefix: ' sha1=' }, /^Error: verify\.prefix: expected printable ASCII/],
    [{ ...base, prefix: 'sha1=\n' }, /^Error: verify\.prefix: expected printable ASCII/],
    [{ ...base, prefix: 5 }, /^Error: verify\.prefix: /],
    [
      { ...base, digest: 'hex' },
      /^Error: verify\.digest: expected one of the fields provider, secret, previousSecret, header, algorithm, encoding, prefix$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
