import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isSealed, parseSecretsKey, SecretsBox } from '../../server/secrets-box.ts';
import { ConfigError, PosternError } from '../../shared/errors.ts';

const KEY = Buffer.alloc(32, 7);
const box = new SecretsBox(KEY, 'the test key');

function refused(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PosternError, String(err));
    assert.equal(err.code, 'ERR_SECRETS_KEY');
    assert.match(err.message, pattern);
    return true;
  };
}

test('seal gives enc:v1:<base64 of 12-byte nonce | ciphertext | 16-byte tag>; open gives the text back', () => {
  const sealed = box.seal('gh-secret-ü', 'ctx');
  assert.ok(isSealed(sealed));
  const raw = Buffer.from(sealed.slice('enc:v1:'.length), 'base64');
  assert.equal(raw.length, 12 + Buffer.byteLength('gh-secret-ü') + 16);
  assert.equal(sealed.includes('gh-secret'), false);
  assert.equal(box.open(sealed, 'ctx'), 'gh-secret-ü');
  assert.notEqual(box.seal('gh-secret-ü', 'ctx'), sealed, 'a fresh nonce each time');
  assert.equal(isSealed('gh-secret'), false);
  assert.equal(isSealed(42), false);
});

test('open refuses another context, another key, and any changed byte', () => {
  const sealed = box.seal('s3cret', 'channel ch_a');
  assert.throws(
    () => box.open(sealed, 'channel ch_b'),
    refused(/^channel ch_b: the key from the test key does not open it$/),
  );
  const other = new SecretsBox(randomBytes(32), 'POSTERN_SECRETS_KEY');
  assert.throws(
    () => other.open(sealed, 'channel ch_a'),
    refused(/key from POSTERN_SECRETS_KEY does not open it/),
  );
  const raw = Buffer.from(sealed.slice(7), 'base64');
  for (const at of [0, 12, raw.length - 1]) {
    const bent = Buffer.from(raw);
    bent[at] = bent[at]! ^ 1;
    assert.throws(
      () => box.open(`enc:v1:${bent.toString('base64')}`, 'channel ch_a'),
      refused(/does not open it/),
    );
  }
  assert.throws(() => box.open('enc:v1:AAAA', 'x'), refused(/^x: not a sealed value$/));
  assert.throws(() => box.open('enc:v1:!!!', 'x'), refused(/not a sealed value/));
});

test('parseSecretsKey takes the base64 of exactly 32 bytes and never repeats what it was given', () => {
  const good = randomBytes(32).toString('base64');
  assert.deepEqual(parseSecretsKey(`${good}\n`, 'K'), Buffer.from(good, 'base64'));
  const wrong = [
    randomBytes(31).toString('base64'),
    randomBytes(33).toString('base64'),
    randomBytes(32).toString('base64url'),
    good.replace(/=$/, ''),
    'correct horse battery staple correct horse!',
    '',
  ];
  for (const text of wrong) {
    assert.throws(
      () => parseSecretsKey(text, 'POSTERN_SECRETS_KEY'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(
          err.message,
          'POSTERN_SECRETS_KEY: expected the base64 of 32 random bytes (e.g. openssl rand -base64 32)',
        );
        return true;
      },
      JSON.stringify(text),
    );
  }
});
