/**
 * Opening the embedded store's data dir, in the order that keeps it safe: create it owner-only,
 * take the one-relay lock before reading anything, tighten what others could reach, then read
 * the control document and open its secrets with a key kept elsewhere.
 */
import type { ControlDocument } from './control.ts';
import { ensurePrivateDir, tightenTree } from './file-modes.ts';
import { DataDirLock } from './lock.ts';
import { loadSecretsKey, type SecretsKeySource } from './secrets-key.ts';

export interface StoreLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface DataDirOptions {
  dataDir: string;
  secretsKey: SecretsKeySource;
  /** Start even if the key cannot open the secrets: those channels then refuse every request. */
  forgetLostSecrets: boolean;
  log: StoreLog;
}

/**
 * Creates the data dir owner-only, takes the one-relay lock, then tightens what others could
 * reach. For a store whose state is elsewhere (PostgreSQL): the dir still holds the admin token
 * and the secrets key.
 */
export async function lockDataDir(dataDir: string, log: StoreLog): Promise<DataDirLock> {
  await ensurePrivateDir(dataDir, log);
  const lock = await DataDirLock.acquire(dataDir, log);
  try {
    await tightenTree(dataDir, log);
    return lock;
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/** Returns the lock, held until the store closes; on any failure it is released. */
export async function openDataDir(
  opts: DataDirOptions,
  control: ControlDocument,
): Promise<DataDirLock> {
  const { dataDir, secretsKey, forgetLostSecrets: forget, log } = opts;
  await ensurePrivateDir(dataDir, log);
  const lock = await DataDirLock.acquire(dataDir, log);
  try {
    await tightenTree(dataDir, log);
    const secrets = await control.read(
      (needed) => loadSecretsKey(secretsKey, dataDir, { needed: needed && !forget, log }),
      forget,
    );
    if (secrets.plaintext > 0) {
      log.warn(
        { count: secrets.plaintext },
        `encrypted ${secrets.plaintext} channel secrets at rest`,
      );
    }
    if (secrets.lost.length > 0) {
      log.warn(
        { channelIds: secrets.lost },
        'channel secrets lost with their key: these channels refuse every request until their verify secrets are set again',
      );
    }
    return lock;
  } catch (err) {
    await lock.release();
    throw err;
  }
}
