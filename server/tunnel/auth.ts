/**
 * Verifies an agent's tunnel JWT before the WebSocket upgrade is accepted (RFC 8725): EdDSA
 * only, `typ` postern-agent+jwt, `iss` = `sub` = a paired agent, `aud` = this relay's public URL,
 * a life of at most 60 s, and a `jti` never seen before.
 */
import { decodeJwt, importJWK, jwtVerify, type CryptoKey, type KeyObject } from 'jose';
import {
  AGENT_JWT_ALG,
  AGENT_JWT_CLOCK_TOLERANCE_S,
  AGENT_JWT_MAX_LIFETIME_S,
  AGENT_JWT_TYP,
} from '../../shared/agent-token.ts';
import { isPosternError, PosternError } from '../../shared/errors.ts';
import type { AgentRecord, UsedTokenId } from '../store/types.ts';

function refuse(reason: string): never {
  throw new PosternError('ERR_UNAUTHORIZED', reason, { status: 401, expose: true });
}

export interface AgentTokenVerifierDeps {
  audience: string;
  agent: (id: string) => AgentRecord | undefined;
  /** Token ids already used (a copy of the store's, for a quick refusal). */
  used: () => readonly UsedTokenId[];
  /**
   * Checks that the token id is not among those stored and records it, in one durable step
   * serialized with every other relay's (so a replay to another relay is refused too); throws
   * ERR_UNAUTHORIZED when it is already used, or when the agent is no longer paired with the
   * key `keyX` (revoked or paired again through another relay meanwhile).
   */
  recordUsed: (entry: UsedTokenId, nowS: number, keyX: string) => Promise<void>;
  now?: () => number;
}

export class AgentTokenVerifier {
  readonly #deps: AgentTokenVerifierDeps;
  readonly #now: () => number;
  /** Keys of tokens being accepted right now, before their id is durably recorded. */
  readonly #pending = new Set<string>();
  readonly #keys = new Map<string, { x: string; key: CryptoKey | KeyObject }>();

  constructor(deps: AgentTokenVerifierDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** Returns the agent id, or throws `ERR_UNAUTHORIZED` with a short reason. */
  async verify(token: string): Promise<string> {
    let claims;
    try {
      claims = decodeJwt(token);
    } catch {
      return refuse('malformed token');
    }
    const agentId = claims.iss;
    if (typeof agentId !== 'string') return refuse('token has no iss');
    const agent = this.#deps.agent(agentId);
    if (!agent?.publicKey) return refuse('unknown or unpaired agent');
    const key = await this.#key(agent);
    const nowS = Math.floor(this.#now() / 1000);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: [AGENT_JWT_ALG],
        typ: AGENT_JWT_TYP,
        audience: this.#deps.audience,
        issuer: agentId,
        subject: agentId,
        maxTokenAge: AGENT_JWT_MAX_LIFETIME_S + AGENT_JWT_CLOCK_TOLERANCE_S,
        clockTolerance: AGENT_JWT_CLOCK_TOLERANCE_S,
        requiredClaims: ['jti', 'exp', 'iat'],
        currentDate: new Date(nowS * 1000),
      }));
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR_JWT_INVALID';
      return refuse(`token refused (${code})`);
    }
    const { iat, exp, jti } = payload as { iat: number; exp: number; jti: unknown };
    if (exp - iat > AGENT_JWT_MAX_LIFETIME_S) {
      return refuse(`token lifetime over ${AGENT_JWT_MAX_LIFETIME_S}s`);
    }
    if (typeof jti !== 'string' || jti.length < 16 || jti.length > 128) {
      return refuse('token jti must be 16–128 characters');
    }
    const used = `${agentId}:${jti}`;
    if (this.#pending.has(used) || this.#deps.used().some((u) => u.key === used)) {
      return refuse('token replayed (jti already used)');
    }
    this.#pending.add(used);
    try {
      await this.#deps.recordUsed(
        { key: used, until: exp + AGENT_JWT_CLOCK_TOLERANCE_S },
        nowS,
        agent.publicKey.x,
      );
    } catch (err) {
      if (isPosternError(err) && err.code === 'ERR_UNAUTHORIZED') return refuse(err.message);
      return refuse('cannot record the token id; try again');
    } finally {
      this.#pending.delete(used);
    }
    return agentId;
  }

  async #key(agent: AgentRecord): Promise<CryptoKey | KeyObject> {
    const jwk = agent.publicKey!;
    const cached = this.#keys.get(agent.id);
    if (cached?.x === jwk.x) return cached.key;
    const key = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, AGENT_JWT_ALG);
    if (key instanceof Uint8Array) return refuse('agent key is not a public key');
    this.#keys.set(agent.id, { x: jwk.x, key });
    return key;
  }
}
