/** `pair`: makes a key pair locally, trades the one-time code for an agent identity. */
import { request } from 'undici';
import { ConfigError } from '../shared/errors.ts';
import { isObject, readString, type Fail } from '../shared/fields.ts';
import { newKeyPair, saveIdentity, type Identity } from './identity.ts';

export async function pair(relayUrl: string, code: string, stateDir: string): Promise<Identity> {
  let base: URL;
  try {
    base = new URL(relayUrl);
  } catch {
    throw new ConfigError(`--relay: expected the relay's URL, got "${relayUrl}"`);
  }
  const { privateKey, publicJwk } = newKeyPair();
  let res;
  try {
    res = await request(new URL('/api/pair', base), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code, publicKey: publicJwk }),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
  } catch (err) {
    throw new ConfigError(`cannot reach the relay at ${base.origin}: ${(err as Error).message}`);
  }
  const text = await res.body.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ConfigError(`the relay answered ${res.statusCode} with something that is not JSON`);
  }
  if (res.statusCode !== 200 || !isObject(body)) {
    const error =
      isObject(body) && isObject(body['error'])
        ? String(body['error']['message'])
        : `HTTP ${res.statusCode}`;
    const hint = res.statusCode === 429 ? ' (too many attempts: wait a minute)' : '';
    throw new ConfigError(`pairing refused: ${error}${hint}`);
  }
  const fail: Fail = (field, expected) => {
    throw new ConfigError(`unexpected pairing answer: ${field} is not ${expected}`);
  };
  const identity: Identity = {
    agentId: readString(body, 'agentId', fail, { min: 1 }),
    name: readString(body, 'name', fail),
    relayUrl: base.href.replace(/\/$/, ''),
    audience: readString(body, 'relayUrl', fail, { min: 1 }),
    privateKey,
  };
  await saveIdentity(stateDir, identity);
  return identity;
}
