/** Mints the short-lived JWT each tunnel connection carries (see shared/agent-token.ts). */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { AGENT_JWT_ALG, AGENT_JWT_MAX_LIFETIME_S, AGENT_JWT_TYP } from '../shared/agent-token.ts';
import type { Identity } from './identity.ts';

export function mintToken(identity: Identity, now: number = Date.now()): Promise<string> {
  const iat = Math.floor(now / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: AGENT_JWT_ALG, typ: AGENT_JWT_TYP })
    .setIssuer(identity.agentId)
    .setSubject(identity.agentId)
    .setAudience(identity.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + AGENT_JWT_MAX_LIFETIME_S)
    .setJti(randomUUID())
    .sign(identity.privateKey);
}
