/**
 * One interface for every provider's signature scheme. Each provider lives in its own module
 * and is registered in `registry.ts`; ingress only ever talks to this interface.
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

/**
 * What a valid signature covers, for replay protection: `key` is a SHA-256 (base64url) over the
 * provider's tag and exactly the signed content, so a resent request with the same signed
 * content has the same key whatever else (method, path, unsigned headers) was changed.
 * `windowMs` is how long such a request could verify again (and so must be remembered).
 */
export interface ReplayKey {
  key: string;
  windowMs: number;
}

/** A provider's endpoint check, answered by the relay itself; never stored or forwarded. */
export interface HandshakeAnswer {
  status: number;
  contentType: string;
  body: string;
}

export interface Verifier<C extends { provider: string } = { provider: string }> {
  readonly provider: string;
  /** Validates a channel's `verify` object; `fail` names the field and what was expected. */
  parse(raw: Obj, fail: Fail): C;
  verify(config: C, request: SignedRequest): VerifyResult;
  /** The replay key of a request `verify` accepted (called only then). */
  replayKey(config: C, request: SignedRequest): ReplayKey;
  /** The HTTP methods the provider sends (a channel's default `methods`). */
  readonly methods: readonly string[];
  /**
   * A provider's endpoint check (Slack `url_verification`, Meta `hub.challenge`), looked at
   * before `verify`: returns the answer to send, or null when the request is no handshake. A
   * check the provider signs must be verified here first (an unverified one gets null, and
   * then fails `verify` like any forged request).
   */
  handshake?(config: C, request: SignedRequest): HandshakeAnswer | null;
}
