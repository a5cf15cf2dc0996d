import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import {
  findPairing,
  hashPairingCode,
  newPairingCode,
  parsePublicKey,
} from '../../server/pairing.ts';
import type { PairingRecord } from '../../server/store/types.ts';
import { PosternError } from '../../shared/errors.ts';

const CODE =
  /^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{4}-[ABCDEFGHJKMNPQRSTVWXYZ0-9]{4}-[ABCDEFGHJKMNPQRSTVWXYZ0-9]{4}$/;

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

test('pairing codes look like XXXX-XXXX-XXXX, from an alphabet without I, L, O, U', () => {
  const codes = Array.from({ length: 2_000 }, () => newPairingCode());
  for (const code of codes) {
    assert.match(code, CODE);
    assert.equal(code.length, 14);
  }
  const letters = new Set(codes.join('').replace(/-/g, ''));
  for (const c of 'ILOU') assert.equal(letters.has(c), false, `code used "${c}"`);
  // 2,000 codes of 60 random bits: every one distinct, and the whole alphabet in use.
  assert.equal(new Set(codes).size, 2_000);
  assert.equal(letters.size, 32);
});

test('hashPairingCode is the SHA-256 of the code without dashes, upper case', () => {
  assert.equal(hashPairingCode('ABCD-EFGH-JKMN'), sha256('ABCDEFGHJKMN'));
  assert.match(hashPairingCode('ABCD-EFGH-JKMN'), /^[0-9a-f]{64}$/);
});

test('hashPairingCode ignores case, dashes and spaces', () => {
  const expected = hashPairingCode('ABCD-EFGH-JKMN');
  for (const typed of [
    'abcd-efgh-jkmn',
    'ABCDEFGHJKMN',
    'abcd efgh jkmn',
    ' Abcd-Efgh-Jkmn ',
    'ab-cd-ef-gh-jk-mn',
    'ABCD\tEFGH\nJKMN',
  ]) {
    assert.equal(hashPairingCode(typed), expected, `"${typed}"`);
  }
  assert.notEqual(hashPairingCode('ABCD-EFGH-JKMP'), expected);
});

const NOW = 1_700_000_000_000;

function pairing(code: string, agentId: string, expiresAt: number): PairingRecord {
  return { codeHash: hashPairingCode(code), agentId, expiresAt };
}

test('findPairing finds the live pairing a code belongs to', () => {
  const pairings = [
    pairing('AAAA-AAAA-AAAA', 'ag_1', NOW + 60_000),
    pairing('BBBB-BBBB-BBBB', 'ag_2', NOW + 60_000),
    pairing('CCCC-CCCC-CCCC', 'ag_3', NOW + 60_000),
  ];
  assert.equal(findPairing(pairings, 'BBBB-BBBB-BBBB', NOW)?.agentId, 'ag_2');
  assert.equal(findPairing(pairings, 'cccc cccc cccc', NOW)?.agentId, 'ag_3');
  assert.equal(findPairing(pairings, 'AAAAAAAAAAAA', NOW), pairings[0]);
  assert.equal(findPairing(pairings, 'DDDD-DDDD-DDDD', NOW), undefined);
  assert.equal(findPairing(pairings, '', NOW), undefined);
  assert.equal(findPairing([], 'AAAA-AAAA-AAAA', NOW), undefined);
});

test('findPairing ignores expired codes', () => {
  const pairings = [
    pairing('AAAA-AAAA-AAAA', 'ag_past', NOW - 1),
    pairing('BBBB-BBBB-BBBB', 'ag_edge', NOW),
    pairing('CCCC-CCCC-CCCC', 'ag_live', NOW + 1),
  ];
  assert.equal(findPairing(pairings, 'AAAA-AAAA-AAAA', NOW), undefined);
  assert.equal(findPairing(pairings, 'BBBB-BBBB-BBBB', NOW), undefined);
  assert.equal(findPairing(pairings, 'CCCC-CCCC-CCCC', NOW)?.agentId, 'ag_live');
  assert.equal(findPairing(pairings, 'CCCC-CCCC-CCCC', NOW + 1), undefined);
});

test('findPairing: an expired and a live pairing of the same code give the live one', () => {
  const pairings = [
    pairing('AAAA-AAAA-AAAA', 'ag_old', NOW - 1_000),
    pairing('AAAA-AAAA-AAAA', 'ag_new', NOW + 1_000),
  ];
  assert.equal(findPairing(pairings, 'AAAA-AAAA-AAAA', NOW)?.agentId, 'ag_new');
});

function ed25519Jwk() {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { pub: publicKey.export({ format: 'jwk' }), priv: privateKey.export({ format: 'jwk' }) };
}

function assertBadKey(value: unknown, field: RegExp): void {
  assert.throws(
    () => parsePublicKey(value),
    (err: unknown) => {
      assert.ok(err instanceof PosternError);
      assert.equal(err.code, 'ERR_BAD_REQUEST');
      assert.equal(err.status, 400);
      assert.match(err.message, field);
      return true;
    },
  );
}

test('parsePublicKey accepts an Ed25519 public JWK and keeps only kty, crv, x', () => {
  const { pub } = ed25519Jwk();
  assert.equal(typeof pub.x, 'string');
  const parsed = parsePublicKey({ ...pub, kid: 'k1', use: 'sig', alg: 'EdDSA' });
  assert.deepEqual(parsed, { kty: 'OKP', crv: 'Ed25519', x: pub.x });
});

test('parsePublicKey refuses a private JWK', () => {
  const { priv } = ed25519Jwk();
  assert.equal(typeof priv.d, 'string');
  assertBadKey(priv, /^publicKey: .*no "d"/);
});

test('parsePublicKey refuses other key types and curves', () => {
  const { pub } = ed25519Jwk();
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    format: 'jwk',
  });
  assertBadKey(x25519, /^publicKey: /);
  assertBadKey(p256, /^publicKey: /);
  assertBadKey({ ...pub, crv: 'Ed448' }, /^publicKey: /);
  assertBadKey({ ...pub, kty: 'EC' }, /^publicKey: /);
  assertBadKey({ kty: 'oct', k: 'c2VjcmV0' }, /^publicKey: /);
});

test('parsePublicKey refuses a bad x', () => {
  const { pub } = ed25519Jwk();
  const x = pub.x ?? '';
  assertBadKey({ kty: 'OKP', crv: 'Ed25519' }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: 42 }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: x.slice(0, 42) }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: `${x}A` }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: `+${x.slice(1)}` }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: `${x.slice(0, 42)}=` }, /^publicKey\.x: /);
  assertBadKey({ kty: 'OKP', crv: 'Ed25519', x: '' }, /^publicKey\.x: /);
});

test('parsePublicKey refuses what is not an object', () => {
  for (const value of [null, undefined, 'key', 42, [], [{ kty: 'OKP' }]]) {
    assertBadKey(value, /^publicKey: /);
  }
});
