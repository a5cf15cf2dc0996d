/**
 * Strict decoders for received signatures. `Buffer.from(text, 'hex' | 'base64')` skips or
 * stops at bad characters without a word, so a signature followed by garbage would decode to
 * the right bytes: the shape is checked first, and base64 must be canonical (RFC 4648 §4).
 */

const HEX = /^[0-9a-fA-F]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Exactly `bytes` bytes as hex (either case), or undefined. */
export function decodeHex(text: string, bytes: number): Buffer | undefined {
  if (text.length !== bytes * 2 || !HEX.test(text)) return undefined;
  return Buffer.from(text, 'hex');
}

/** Exactly `bytes` bytes as padded standard base64, or undefined. */
export function decodeBase64(text: string, bytes: number): Buffer | undefined {
  if (text.length !== Math.ceil(bytes / 3) * 4 || !BASE64.test(text)) return undefined;
  const decoded = Buffer.from(text, 'base64');
  // Re-encoding also refuses non-zero padding bits, which decode to the same bytes.
  if (decoded.length !== bytes || decoded.toString('base64') !== text) return undefined;
  return decoded;
}

/** A base64 key of any non-zero length, padding optional (secrets are pasted by hand). */
export function decodeBase64Key(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined;
  const decoded = Buffer.from(text, 'base64');
  const unpadded = text.replace(/=+$/, '');
  if (decoded.length === 0 || decoded.toString('base64').replace(/=+$/, '') !== unpadded) {
    return undefined;
  }
  return decoded;
}
