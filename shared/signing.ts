/** HMAC and constant-time comparison helpers used by edge verification and re-signing. */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type HmacAlgorithm = 'sha1' | 'sha256' | 'sha512';

export function hmac(
  algorithm: HmacAlgorithm,
  key: string | Uint8Array,
  ...parts: (string | Uint8Array)[]
): Buffer {
  const mac = createHmac(algorithm, key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/**
 * Compares two byte strings in time that depends only on their lengths. A length mismatch
 * still runs a comparison so that the early return does not reveal where inputs differ.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

export function constantTimeEqualString(a: string, b: string): boolean {
  return constantTimeEqual(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Standard Webhooks signature (https://www.standardwebhooks.com/): `v1,` + base64 HMAC-SHA256
 * of `{id}.{timestamp}.{body}`, keyed with the base64 part of a `whsec_` secret.
 */
export function standardWebhooksSignature(
  secret: string,
  id: string,
  timestampS: number,
  body: Uint8Array,
): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
  return `v1,${hmac('sha256', key, `${id}.${timestampS}.`, body).toString('base64')}`;
}
