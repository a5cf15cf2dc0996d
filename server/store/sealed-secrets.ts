/**
 * Channel secrets in the control document are encrypted on disk and plain in memory: the
 * document is opened once when read and sealed on every write, so that verification code only
 * ever sees plaintext. Each value is bound to its channel and field (the associated data).
 * A value already sealed is written again as it was: re-encrypting every secret on every
 * write would spend random nonces for nothing.
 */
import { randomBytes } from 'node:crypto';
import { PosternError } from '../../shared/errors.ts';
import { isObject } from '../../shared/fields.ts';
import { constantTimeEqualString } from '../../shared/signing.ts';
import { isSealed, type SecretsBox } from '../secrets-box.ts';
import { VERIFY_SECRET_FIELDS } from '../verify/registry.ts';
import type { ChannelRecord, ControlState } from './types.ts';

function context(channelId: string, field: string): string {
  return `postern channel ${channelId} verify.${field}`;
}

/** Each secret field of each channel: [channel, its verify object, field name, value]. */
function* secretFields(
  state: ControlState,
): Generator<[ChannelRecord, Record<string, unknown>, string, string]> {
  for (const channel of state.channels) {
    const verify: unknown = channel.verify;
    if (!isObject(verify)) continue;
    for (const field of VERIFY_SECRET_FIELDS) {
      const value = verify[field];
      if (typeof value === 'string') yield [channel, verify, field, value];
    }
  }
}

/** How many sealed values the document holds (as read from disk). */
export function countSealed(state: ControlState): number {
  let n = 0;
  for (const [, , , value] of secretFields(state)) if (isSealed(value)) n++;
  return n;
}

export interface OpenResult {
  /** Secrets that were in clear on disk (written by an earlier version). */
  plaintext: number;
  /** Channels whose secrets the key could not open and that now hold unknown ones. */
  lost: string[];
}

export class SealedSecrets {
  readonly #box: SecretsBox;
  /** channel id + field → [plaintext, sealed form on disk]. */
  #sealed = new Map<string, [string, string]>();

  constructor(box: SecretsBox) {
    this.#box = box;
  }

  /**
   * Decrypts every sealed secret of a document just read, in place. A value the key cannot
   * open fails with ERR_SECRETS_KEY, or with `forgetLost` becomes a random secret nobody
   * knows: the channel then refuses every request until its secrets are set again.
   */
  open(state: ControlState, file: string, forgetLost: boolean): OpenResult {
    const result: OpenResult = { plaintext: 0, lost: [] };
    for (const [channel, verify, field, value] of secretFields(state)) {
      if (!isSealed(value)) {
        result.plaintext++;
        continue;
      }
      try {
        const plain = this.#box.open(value, context(channel.id, field));
        verify[field] = plain;
        this.#sealed.set(`${channel.id}\0${field}`, [plain, value]);
      } catch (err) {
        if (!forgetLost) {
          throw new PosternError(
            'ERR_SECRETS_KEY',
            `${file}: the secrets of channel ${channel.id} do not open with the key from ` +
              `${this.#box.source}, which is not the key they were encrypted with. Start with that ` +
              `key (restore it from its backup); if it is lost, start once with --forget-lost-secrets ` +
              `and set the secrets of the channels it names again`,
            { cause: err },
          );
        }
        verify[field] = `lost:${randomBytes(32).toString('base64url')}`;
        if (!result.lost.includes(channel.id)) result.lost.push(channel.id);
      }
    }
    return result;
  }

  /** The document as written to disk: a copy with every secret sealed. */
  seal(state: ControlState): ControlState {
    const next = new Map<string, [string, string]>();
    const channels = state.channels.map((channel) => {
      if (!isObject(channel.verify)) return channel;
      const verify: Record<string, unknown> = { ...channel.verify };
      for (const field of VERIFY_SECRET_FIELDS) {
        const plain = verify[field];
        if (typeof plain !== 'string') continue;
        const key = `${channel.id}\0${field}`;
        const known = this.#sealed.get(key);
        const sealed =
          known && constantTimeEqualString(known[0], plain)
            ? known[1]
            : this.#box.seal(plain, context(channel.id, field));
        next.set(key, [plain, sealed]);
        verify[field] = sealed;
      }
      return { ...channel, verify: verify as ChannelRecord['verify'] };
    });
    this.#sealed = next;
    return { ...state, channels };
  }
}
