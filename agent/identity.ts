/**
 * The agent's identity in its state directory: `identity.json` (agent id, relay URLs) and
 * `agent.key`, the Ed25519 private key (PKCS#8 PEM, mode 0600). The key never leaves the host.
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../shared/errors.ts';
import { isObject, readString, type Fail } from '../shared/fields.ts';

export interface Identity {
  agentId: string;
  name: string;
  /** Where the agent dials (as given to `pair --relay`). */
  relayUrl: string;
  /** The relay's public URL: the `aud` of every token. */
  audience: string;
  privateKey: KeyObject;
}

export const IDENTITY_FILE = 'identity.json';
export const KEY_FILE = 'agent.key';

/** Where the agent keeps its identity when neither --state-dir nor the variable says. */
export function homeStateDir(): string {
  return path.join(os.homedir(), '.postern-agent');
}

export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  return env['POSTERN_AGENT_STATE_DIR'] ?? homeStateDir();
}

/**
 * What identity a state dir already holds: none, one (its agent's id and name), or files that
 * cannot be read as one (still an identity `pair` must not silently replace).
 */
export async function existingIdentity(
  stateDir: string,
): Promise<null | { agentId: string; name: string } | 'unreadable'> {
  const present = await Promise.all(
    [IDENTITY_FILE, KEY_FILE].map((f) =>
      stat(path.join(stateDir, f)).then(
        () => true,
        (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
      ),
    ),
  );
  if (!present.some(Boolean)) return null;
  try {
    const raw: unknown = JSON.parse(await readFile(path.join(stateDir, IDENTITY_FILE), 'utf8'));
    if (isObject(raw) && typeof raw['agentId'] === 'string' && typeof raw['name'] === 'string') {
      return { agentId: raw['agentId'], name: raw['name'] };
    }
  } catch {
    // Unreadable or not JSON: still there, still not to be replaced without --force.
  }
  return 'unreadable';
}

/** A fresh Ed25519 key pair; the public half as a JWK for the relay. */
export function newKeyPair(): {
  privateKey: KeyObject;
  publicJwk: { kty: string; crv: string; x: string };
} {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { privateKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x) } };
}

/**
 * Writes a file only its owner can read, whatever the umask (which only narrows the mode given
 * at creation). A temp file left by a crash would keep its old mode, and whoever held it open
 * would read the key: it is removed and created afresh.
 */
async function writePrivate(file: string, data: string): Promise<void> {
  const temp = `${file}.tmp`;
  await rm(temp, { force: true });
  await writeFile(temp, data, { mode: 0o600, flag: 'wx' });
  await rename(temp, file);
}

export async function saveIdentity(stateDir: string, identity: Identity): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const pem = identity.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  await writePrivate(path.join(stateDir, KEY_FILE), pem);
  const { privateKey: _omit, ...rest } = identity;
  await writePrivate(path.join(stateDir, IDENTITY_FILE), `${JSON.stringify(rest, null, 2)}\n`);
}

/** `pairCommand`: the command to print for pairing, as this process would run it. */
export async function loadIdentity(
  stateDir: string,
  pairCommand = 'postern-agent pair --relay URL --code CODE',
): Promise<Identity> {
  const idFile = path.join(stateDir, IDENTITY_FILE);
  const keyFile = path.join(stateDir, KEY_FILE);
  let text: string;
  let pem: string;
  try {
    [text, pem] = await Promise.all([readFile(idFile, 'utf8'), readFile(keyFile, 'utf8')]);
  } catch {
    throw new ConfigError(`${stateDir}: no agent identity here; pair first: ${pairCommand}`);
  }
  const fail: Fail = (field, expected) => {
    throw new ConfigError(`${idFile}: ${field}: expected ${expected}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail('(file)', 'valid JSON');
  }
  if (!isObject(raw)) return fail('(file)', 'a JSON object');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new ConfigError(`${keyFile}: expected an Ed25519 private key in PEM`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new ConfigError(
      `${keyFile}: expected an Ed25519 private key, got ${privateKey.asymmetricKeyType}`,
    );
  }
  return {
    agentId: readString(raw, 'agentId', fail, { min: 1 }),
    name: readString(raw, 'name', fail),
    relayUrl: readString(raw, 'relayUrl', fail, { min: 1 }),
    audience: readString(raw, 'audience', fail, { min: 1 }),
    privateKey,
  };
}
