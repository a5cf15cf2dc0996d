/**
 * One interface for every provider's signature scheme. Each provider lives in its own module
 * and is registered in `index.ts`; ingress only ever talks to this interface.
 */
import type { Fail, Obj } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

export interface SignedRequest {
  method: string;
  /** The full public URL the provider called (the relay's public URL + path + query). */
  url: string;
  headers: readonly HeaderPair[];
  body: Buffer;
  /** ms since epoch, for timestamped schemes. */
  now: number;
}

/** `reason` is a short code for the operator (and the 401 body), never a secret. */
export type VerifyResult = { ok: true } | { ok: false; reason: string };

export interface Verifier<C extends { provider: string } = { provider: string }> {
  readonly provider: string;
  /** Validates a channel's `verify` object; `fail` names the field and what was expected. */
  parse(raw: Obj, fail: Fail): C;
  /** The config without its secrets, as API answers show it. */
  describe(config: C): Record<string, unknown>;
  verify(config: C, request: SignedRequest): VerifyResult;
}
