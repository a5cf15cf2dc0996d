/** What the provider modules share: secrets with rotation, unknown fields, the time window. */
import { createHash } from 'node:crypto';
import { readOptionalString, readString, type Fail, type Obj } from '../../shared/fields.ts';
import { constantTimeEqual, hmac, type HmacAlgorithm } from '../../shared/signing.ts';
import type { ReplayKey, SignedRequest, VerifyResult } from './verifier.ts';

/** Timestamped schemes refuse a request signed further than this from now, either way. */
export const TIMESTAMP_TOLERANCE_MS = 5 * 60_000;

/**
 * How long a timestamped request can verify again after it was first received: its timestamp
 * may be up to the tolerance ahead of the relay's clock, and then stays valid for as long
 * again; a minute more for clocks that step.
 */
export const TIMESTAMPED_REPLAY_MS = 2 * TIMESTAMP_TOLERANCE_MS + 60_000;

/** A signature over the body alone never expires: such a request is remembered for a day. */
export const BODY_REPLAY_MS = 24 * 3_600_000;

/** What most providers send: webhooks are POSTs. */
export const POST_ONLY: readonly string[] = Object.freeze(['POST']);

/** The replay key over `tag` and the signed `parts`, in the order they were signed. */
export function replayKeyOver(
  tag: string,
  windowMs: number,
  parts: readonly (string | Uint8Array)[],
): ReplayKey {
  const hash = createHash('sha256').update(`postern-replay:${tag}\n`, 'utf8');
  for (const part of parts) hash.update(part);
  return { key: hash.digest('base64url'), windowMs };
}

/** The replay key of a provider that signs the body alone. */
export function bodyReplayKey(tag: string): (config: unknown, request: SignedRequest) => ReplayKey {
  return (_config, request) => replayKeyOver(tag, BODY_REPLAY_MS, [request.body]);
}

const SECRET_LENGTH = { min: 1, max: 1024 };

export type Secrets = {
  secret: string;
  /** Accepted as well during a rotation. */
  previousSecret?: string;
};

/** Refuses a field the provider does not take, so a typo is an error, not a silent default. */
export function onlyFields(raw: Obj, allowed: readonly string[], fail: Fail): void {
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) fail(key, `one of the fields ${allowed.join(', ')}`);
  }
}

/** The fields of a provider that takes nothing but its secrets. */
export const SECRET_FIELDS = ['provider', 'secret', 'previousSecret'];

/** The config of a provider that takes nothing but its secrets. */
export function parseSecrets<P extends string>(
  provider: P,
  raw: Obj,
  fail: Fail,
): Secrets & { provider: P } {
  onlyFields(raw, SECRET_FIELDS, fail);
  return { provider, ...readSecrets(raw, fail) };
}

export function readSecrets(raw: Obj, fail: Fail): Secrets {
  const secrets: Secrets = { secret: readString(raw, 'secret', fail, SECRET_LENGTH) };
  const previous = readOptionalString(raw, 'previousSecret', fail, SECRET_LENGTH);
  if (previous !== undefined) secrets.previousSecret = previous;
  return secrets;
}

/** The secrets to try, current first. */
export function secretsOf(config: Secrets): string[] {
  return config.previousSecret === undefined
    ? [config.secret]
    : [config.secret, config.previousSecret];
}

/**
 * True when one of the keys' HMAC of `parts` equals one of the received signatures. Every
 * comparison is constant-time; the loop always runs to the end.
 */
export function anyMatch(
  algorithm: HmacAlgorithm,
  keys: readonly (string | Uint8Array)[],
  parts: readonly (string | Uint8Array)[],
  received: readonly Uint8Array[],
): boolean {
  let matched = false;
  for (const key of keys) {
    const expected = hmac(algorithm, key, ...parts);
    for (const given of received) if (constantTimeEqual(expected, given)) matched = true;
  }
  return matched;
}

/** Compares two secrets without revealing where, or whether in length, they differ. */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return constantTimeEqual(digest(a), digest(b));
}

const SECONDS = /^[0-9]{1,12}$/;

/** A Unix timestamp in seconds, within the tolerance of `now` (ms). */
export function checkTimestamp(value: string | undefined, now: number): VerifyResult {
  if (value === undefined) return { ok: false, reason: 'missing_timestamp' };
  if (!SECONDS.test(value)) return { ok: false, reason: 'malformed_timestamp' };
  if (Math.abs(now - Number(value) * 1000) > TIMESTAMP_TOLERANCE_MS) {
    return { ok: false, reason: 'timestamp_out_of_range' };
  }
  return { ok: true };
}

/** The query of a full URL, decoded as a form (`+` is a space). */
export function queryOf(url: string): URLSearchParams {
  const q = url.indexOf('?');
  if (q < 0) return new URLSearchParams();
  const hash = url.indexOf('#', q);
  return new URLSearchParams(url.slice(q + 1, hash < 0 ? undefined : hash));
}

export const MISSING: VerifyResult = Object.freeze({ ok: false, reason: 'missing_signature' });
export const MALFORMED: VerifyResult = Object.freeze({ ok: false, reason: 'malformed_signature' });
export const MISMATCH: VerifyResult = Object.freeze({ ok: false, reason: 'signature_mismatch' });
export const OK: VerifyResult = Object.freeze({ ok: true });
