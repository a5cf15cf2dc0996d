/**
 * Owner-only permissions for everything under the data dir: directories 0700, files 0600,
 * whatever the umask. New files are created with an explicit mode (which the umask can only
 * narrow); what already exists with group or other bits is tightened at start, with a warning
 * naming the path and its old mode.
 */
import { chmod, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../shared/errors.ts';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Group and other permission bits. */
const SHARED_BITS = 0o077;

/** Directories below the data dir are few (the journal); this bounds a walk of a strange tree. */
const MAX_DEPTH = 4;

export interface ModeWarner {
  warn(fields: Record<string, unknown>, msg: string): void;
}

export function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

async function restrict(target: string, mode: number, want: number, log: ModeWarner) {
  try {
    await chmod(target, want);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES') throw err;
    throw new ConfigError(
      `${target} is mode ${octal(mode)} and the relay (uid ${process.getuid?.() ?? '?'}) cannot ` +
        `restrict it to ${octal(want)}: make the relay's user own the data dir (chown -R) and start again`,
    );
  }
  log.warn(
    { path: target, mode: octal(mode), now: octal(want) },
    'tightened the permissions of a data-dir entry that other users could reach',
  );
}

/** Creates `dir` (and missing parents) as 0700, or tightens it if it exists with shared bits. */
export async function ensurePrivateDir(dir: string, log: ModeWarner): Promise<void> {
  // The umask can only narrow the mode given here, so a directory created now is 0700 at most.
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const { mode } = await stat(dir);
  if ((mode & SHARED_BITS) !== 0) await restrict(dir, mode, PRIVATE_DIR_MODE, log);
}

/**
 * Tightens every directory and regular file below `dir` that group or others can reach.
 * Symbolic links are left alone: chmod would follow them out of the data dir.
 */
export async function tightenTree(dir: string, log: ModeWarner, depth = 0): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const target = path.join(dir, entry.name);
    if (!entry.isDirectory() && !entry.isFile()) continue;
    let mode: number;
    try {
      mode = (await lstat(target)).mode;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const want = entry.isDirectory() ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE;
    if ((mode & SHARED_BITS) !== 0) await restrict(target, mode, want, log);
    if (entry.isDirectory() && depth < MAX_DEPTH) await tightenTree(target, log, depth + 1);
  }
}
