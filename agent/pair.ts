/** `pair`: makes a key pair locally, trades the one-time code for an agent identity. */
import { request } from 'undici';
import { ConfigError } from '../shared/errors.ts';
import { isObject, readString, type Fail } from '../shared/fields.ts';
import { existingIdentity, newKeyPair, saveIdentity, type Identity } from './identity.ts';

export interface Paired {
  identity: Identity;
  /** The channels the agent is granted, as the relay's answer lists them. */
  channels: { id: string; name: string }[];
}

/**
 * Refuses, before the code is spent, to pair into a state dir that already holds an identity
 * (which `saveIdentity` would replace, leaving that agent without its key) unless `force`.
 */
export async function pair(
  relayUrl: string,
  code: string,
  stateDir: string,
  opts: { force?: boolean } = {},
): Promise<Paired> {
  let base: URL;
  try {
    base = new URL(relayUrl);
  } catch {
    throw new ConfigError(`--relay: expected the relay's URL, got "${relayUrl}"`);
  }
  if (!opts.force) {
    const existing = await existingIdentity(stateDir);
    if (existing !== null) {
      const whose =
        existing === 'unreadable'
          ? 'an agent identity'
          : `the identity of agent ${existing.name} (${existing.agentId})`;
      throw new ConfigError(
        `${stateDir} already holds ${whose}; pairing would replace it: ` +
          'use another --state-dir, or add --force to replace it (the code is not spent)',
      );
    }
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
  // Only for the next steps printed: a missing or odd list is no reason to fail a pairing.
  const list: unknown[] = Array.isArray(body['channels']) ? body['channels'] : [];
  const channels = list.flatMap((c) =>
    isObject(c) && typeof c['id'] === 'string' && typeof c['name'] === 'string'
      ? [{ id: c['id'], name: c['name'] }]
      : [],
  );
  return { identity, channels };
}
