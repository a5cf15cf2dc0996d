/**
 * Authenticated encryption of secrets at rest: AES-256-GCM with a random 96-bit nonce per
 * value (NIST SP 800-38D §8.2.2), stored as `enc:v1:<base64 of nonce | ciphertext | tag>`.
 * The associated data binds a value to where it belongs (a channel and a field), so a value
 * copied elsewhere in the document fails to open instead of being used there.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ConfigError, PosternError } from '../shared/errors.ts';

export const SEALED_PREFIX = 'enc:v1:';
export const SECRETS_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A key as written in POSTERN_SECRETS_KEY or a key file: base64 of exactly 32 bytes. */
export function parseSecretsKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const key = BASE64.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (key.length !== SECRETS_KEY_BYTES || key.toString('base64') !== trimmed) {
    // The value itself is never repeated: it may be a secret pasted in the wrong place.
    throw new ConfigError(
      `${source}: expected the base64 of ${SECRETS_KEY_BYTES} random bytes (e.g. openssl rand -base64 32)`,
    );
  }
  return key;
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

export class SecretsBox {
  readonly #key: Buffer;
  /** Where the key came from, for error messages: never the key. */
  readonly source: string;

  constructor(key: Buffer, source: string) {
    if (key.length !== SECRETS_KEY_BYTES) throw new Error('a secrets key is 32 bytes');
    this.#key = Buffer.from(key);
    this.source = source;
  }

  seal(plaintext: string, context: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
  }

  /** The plaintext, or throws ERR_SECRETS_KEY when this key (or this context) does not open it. */
  open(sealed: string, context: string): string {
    const encoded = sealed.slice(SEALED_PREFIX.length);
    const raw = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : Buffer.alloc(0);
    if (!isSealed(sealed) || raw.length < NONCE_BYTES + TAG_BYTES) {
      throw new PosternError('ERR_SECRETS_KEY', `${context}: not a sealed value`);
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, NONCE_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    try {
      const plain = Buffer.concat([
        decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return plain.toString('utf8');
    } catch (err) {
      throw new PosternError(
        'ERR_SECRETS_KEY',
        `${context}: the key from ${this.source} does not open it`,
        { cause: err },
      );
    }
  }
}
