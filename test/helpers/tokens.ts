/**
 * Tunnel credentials for tests: reads a paired agent's identity from its state dir and mints
 * tokens, well-formed or deliberately wrong, plus a raw WebSocket dial to `/tunnel`.
 */
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';

export interface TestIdentity {
  agentId: string;
  audience: string;
  relayUrl: string;
  privateKey: KeyObject;
}

export async function loadIdentity(stateDir: string): Promise<TestIdentity> {
  const id = JSON.parse(await readFile(path.join(stateDir, 'identity.json'), 'utf8')) as Record<
    string,
    string
  >;
  const privateKey = createPrivateKey(await readFile(path.join(stateDir, 'agent.key'), 'utf8'));
  return {
    agentId: id['agentId']!,
    audience: id['audience']!,
    relayUrl: id['relayUrl']!,
    privateKey,
  };
}

export interface MintOptions {
  iat?: number;
  exp?: number;
  aud?: string;
  iss?: string;
  sub?: string;
  typ?: string;
  jti?: string | null;
  key?: KeyObject;
}

/** A token as the agent makes it, with any field overridden. */
export function mint(identity: TestIdentity, o: MintOptions = {}): Promise<string> {
  const iat = o.iat ?? Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA', typ: o.typ ?? 'postern-agent+jwt' })
    .setIssuer(o.iss ?? identity.agentId)
    .setSubject(o.sub ?? identity.agentId)
    .setAudience(o.aud ?? identity.audience)
    .setIssuedAt(iat)
    .setExpirationTime(o.exp ?? iat + 60);
  if (o.jti !== null) jwt.setJti(o.jti ?? randomUUID());
  return jwt.sign(o.key ?? identity.privateKey);
}

export function tunnelUrl(relayUrl: string): string {
  return `${relayUrl.replace(/^http/, 'ws')}/tunnel`;
}

/**
 * Dials `/tunnel` with a token. Resolves `{ws}` once open, or `{status}` when the upgrade is
 * refused (the HTTP status the relay answered).
 */
export function dial(
  relayUrl: string,
  token: string | null,
): Promise<{ ws?: WebSocket; status?: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(tunnelUrl(relayUrl), {
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('error', (err) => {
      if (ws.readyState !== WebSocket.OPEN) reject(err);
    });
  });
}
