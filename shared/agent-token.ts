/**
 * The agent's tunnel credential: a JWT signed with the agent's own Ed25519 key (RFC 8725
 * best practices: one algorithm, an explicit `typ`, a short life, a unique `jti`).
 */
export const AGENT_JWT_ALG = 'EdDSA';
export const AGENT_JWT_TYP = 'postern-agent+jwt';
/** Longest life a token may claim (`exp - iat`). */
export const AGENT_JWT_MAX_LIFETIME_S = 60;
/** Clock skew tolerated between agent and relay when checking `iat`/`exp`. */
export const AGENT_JWT_CLOCK_TOLERANCE_S = 30;
