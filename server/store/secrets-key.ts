/**
 * Where the key that encrypts channel secrets at rest comes from, never from the document it
 * protects: POSTERN_SECRETS_KEY, a key file (--secrets-key-file), or `<data-dir>/secrets.key`,
 * generated on first start. A copy of state.json alone holds no usable secret.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, PosternError } from '../../shared/errors.ts';
import { parseSecretsKey, SecretsBox } from '../secrets-box.ts';
import { fsyncDirectory } from './durable-file.ts';
import { octal, PRIVATE_FILE_MODE } from './file-modes.ts';

export const SECRETS_KEY_FILE = 'secrets.key';

export type SecretsKeySource =
  /** POSTERN_SECRETS_KEY, already decoded. */
  | { kind: 'env'; key: Buffer }
  /** --secrets-key-file / POSTERN_SECRETS_KEY_FILE. */
  | { kind: 'file'; file: string }
  /** `<data-dir>/secrets.key`, generated when missing (unless secrets need the old one). */
  | { kind: 'data-dir' };

/** A key file may be readable by a group (root:postern 0640) but by no one else, nor writable. */
const TOO_OPEN = 0o027;

export interface KeyLog {
  info(fields: Record<string, unknown>, msg: string): void;
}

export function describeKeySource(source: SecretsKeySource, dataDir: string): string {
  if (source.kind === 'env') return 'POSTERN_SECRETS_KEY';
  if (source.kind === 'file')
    return `${source.file} (--secrets-key-file / POSTERN_SECRETS_KEY_FILE)`;
  return path.join(dataDir, SECRETS_KEY_FILE);
}

async function readKeyFile(file: string, source: string): Promise<Buffer | null> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new ConfigError(`${source}: not a regular file`);
    if ((info.mode & TOO_OPEN) !== 0) {
      throw new ConfigError(
        `${source} is mode ${octal(info.mode)}: other users could read or replace the key; ` +
          `chmod 600 it (or 640 with a group that only the relay's user is in)`,
      );
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseSecretsKey(text, source);
}

async function generate(file: string, log: KeyLog): Promise<Buffer> {
  const key = randomBytes(32);
  const handle = await open(file, 'wx', PRIVATE_FILE_MODE);
  try {
    await handle.writeFile(`${key.toString('base64')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDirectory(path.dirname(file));
  log.info({ path: file }, 'generated the key that encrypts channel secrets at rest');
  return key;
}

/**
 * The box for channel secrets. `needed` says that the document already holds encrypted
 * secrets: then a missing `<data-dir>/secrets.key` is an error, not a reason to make a new one
 * (which could never open them).
 */
export async function loadSecretsKey(
  source: SecretsKeySource,
  dataDir: string,
  opts: {
    needed: boolean;
    log: KeyLog;
    /** What holds the encrypted secrets, for messages (default `<data-dir>/state.json`). */
    holder?: string;
  },
): Promise<SecretsBox> {
  const where = describeKeySource(source, dataDir);
  if (source.kind === 'env') return new SecretsBox(source.key, where);
  if (source.kind === 'file') {
    const key = await readKeyFile(source.file, where);
    if (key === null) {
      throw new ConfigError(
        `${where}: no such file; create it with: openssl rand -base64 32 > ${source.file}`,
      );
    }
    return new SecretsBox(key, where);
  }
  const file = path.join(dataDir, SECRETS_KEY_FILE);
  const existing = await readKeyFile(file, where);
  if (existing) return new SecretsBox(existing, where);
  if (opts.needed) {
    throw new PosternError(
      'ERR_SECRETS_KEY',
      `${opts.holder ?? path.join(dataDir, 'state.json')} holds encrypted channel secrets but ${file} is missing: ` +
        `restore it from its backup, or give the key they were encrypted with ` +
        `(POSTERN_SECRETS_KEY or --secrets-key-file); if it is lost, start once with --forget-lost-secrets`,
    );
  }
  return new SecretsBox(await generate(file, opts.log), where);
}
