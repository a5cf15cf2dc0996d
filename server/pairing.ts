/**
 * One-time pairing codes: 60 random bits shown once as `XXXX-XXXX-XXXX`, stored only as a
 * SHA-256, valid for a short time, burnt on first use. Guessing is rate-limited per address
 * and globally by the API, so 60 bits are far out of reach.
 */
import { randomInt } from 'node:crypto';
import { PosternError } from '../shared/errors.ts';
import { isObject, readString, type Fail } from '../shared/fields.ts';
import { constantTimeEqual } from '../shared/signing.ts';
import { sha256Hex } from './admin-token.ts';
import type { AgentRecord, PairingRecord } from './store/types.ts';

const ALPHABET = 'ABCDEFGHJKMNPQRSTVWXYZ0123456789'; // no I, L, O, U: easy to read aloud

export function newPairingCode(): string {
  const chars = Array.from({ length: 12 }, () => ALPHABET[randomInt(ALPHABET.length)]);
  return `${chars.slice(0, 4).join('')}-${chars.slice(4, 8).join('')}-${chars.slice(8).join('')}`;
}

/** Normalises what a person typed (case, dashes, spaces) before hashing. */
export function hashPairingCode(code: string): string {
  return sha256Hex(code.toUpperCase().replace(/[\s-]/g, ''));
}

/** Finds the live pairing a code belongs to, comparing every stored hash in constant time. */
export function findPairing(
  pairings: readonly PairingRecord[],
  code: string,
  now: number,
): PairingRecord | undefined {
  const given = Buffer.from(hashPairingCode(code), 'hex');
  let found: PairingRecord | undefined;
  for (const p of pairings) {
    if (constantTimeEqual(Buffer.from(p.codeHash, 'hex'), given) && p.expiresAt > now) found = p;
  }
  return found;
}

const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_BAD_REQUEST', `${field}: expected ${expected}`, { status: 400 });
};

/** Validates the agent's public key: an Ed25519 JWK with no private part. */
export function parsePublicKey(value: unknown): NonNullable<AgentRecord['publicKey']> {
  if (!isObject(value)) return fail('publicKey', 'an Ed25519 public JWK {kty, crv, x}');
  if (value['kty'] !== 'OKP' || value['crv'] !== 'Ed25519') {
    return fail('publicKey', 'an Ed25519 public JWK (kty "OKP", crv "Ed25519")');
  }
  if (value['d'] !== undefined) return fail('publicKey', 'a public key only (no "d")');
  const x = readString(value, 'x', (f, e) => fail(`publicKey.${f}`, e), { min: 43, max: 43 });
  if (!/^[A-Za-z0-9_-]{43}$/.test(x)) fail('publicKey.x', '32 bytes, base64url');
  return { kty: 'OKP', crv: 'Ed25519', x };
}
