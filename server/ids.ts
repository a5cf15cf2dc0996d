/**
 * Identifiers: a prefix and 26 Crockford base32 characters. Event ids are ULIDs (48-bit time,
 * 80 random bits, monotonic within a millisecond) so they sort in arrival order; channel and
 * agent ids are 128 random bits, since a channel URL without verification is its own secret.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

export function randomId(prefix: 'ch' | 'ag' | 'ses'): string {
  return `${prefix}_${base32(randomBytes(16))}`;
}

/** Creates a generator of monotonic event ids (`evt_` + ULID). */
export function eventIdGenerator(now: () => number = Date.now): () => string {
  let lastTime = -1;
  const last = new Uint8Array(16);
  return () => {
    const time = Math.max(now(), lastTime);
    if (time === lastTime) {
      // Same millisecond: increment the 80-bit random part so ids stay strictly increasing.
      for (let i = 15; i >= 6; i--) {
        last[i] = (last[i]! + 1) & 0xff;
        if (last[i] !== 0) break;
      }
    } else {
      last.set(randomBytes(10), 6);
      last[6] = last[6]! & 0x7f; // headroom so increments never wrap within a millisecond
      lastTime = time;
      let t = time;
      for (let i = 5; i >= 0; i--) {
        last[i] = t % 256;
        t = Math.floor(t / 256);
      }
    }
    return `evt_${base32(last)}`;
  };
}

/**
 * The smallest event id of millisecond `time`: every event received at or after `time` has an
 * id above it, so a range of ids up to it is a range of arrival times.
 */
export function eventIdFloor(time: number): string {
  const bytes = new Uint8Array(16);
  let t = Math.max(0, Math.floor(time));
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  return `evt_${base32(bytes)}`;
}
