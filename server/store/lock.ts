/**
 * One relay per data dir: `relay.lock` names the relay that holds it (pid, host name, boot id
 * and the process start time, which tells a live holder from a new process that got the same
 * pid). A lock whose holder is gone is taken over at once, with no waiting for it to age.
 *
 * The lock file appears whole or not at all: it is written aside and hard-linked into place
 * (link(2) fails if the name exists). Taking over a stale lock is serialized by a claim file
 * named after that exact lock's content, so of two relays that find the same stale lock, one
 * replaces it and the other then finds a live one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, PosternError } from '../../shared/errors.ts';
import { isObject } from '../../shared/fields.ts';
import { fsyncDirectory } from './durable-file.ts';
import { PRIVATE_FILE_MODE } from './file-modes.ts';

export const LOCK_FILE = 'relay.lock';

/** Rounds of "link, find a stale lock, take it over" before giving up. */
const MAX_ROUNDS = 8;
/** How long to wait for another relay that is taking over the same stale lock. */
const CLAIM_WAIT_MS = 2_000;
const CLAIM_POLL_MS = 10;

export interface LockLog {
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface LockHolder {
  pid: number;
  hostname: string;
  startedAt: string;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null off Linux. */
  processStart: string | null;
  /** /proc/sys/kernel/random/boot_id: a lock from before a reboot is stale whatever its pid. */
  bootId: string | null;
  /** Makes every lock's content unique, so a claim names one lock and no other. */
  nonce: string;
}

/** Field 22 (starttime) of a /proc/<pid>/stat line, proc(5). */
export function startTimeFromStat(stat: string): string | null {
  // Field 2 is the command in parentheses and may hold spaces and ')': count from the last one.
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const value = stat.slice(close + 2).split(' ')[19]; // [0] is field 3
  return value !== undefined && /^\d+$/.test(value) ? value : null;
}

/** The start time of a process, or null when /proc cannot tell (not Linux, process gone). */
export async function processStartTime(pid: number): Promise<string | null> {
  try {
    return startTimeFromStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

async function bootId(): Promise<string | null> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim() || null;
  } catch {
    return null;
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string): LockHolder | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(value)) return null;
  const { pid, hostname, startedAt, processStart, bootId: boot, nonce } = value;
  const optional = (v: unknown) => v === null || typeof v === 'string';
  if (
    typeof pid !== 'number' ||
    !Number.isSafeInteger(pid) ||
    pid <= 0 ||
    typeof hostname !== 'string' ||
    typeof startedAt !== 'string' ||
    typeof nonce !== 'string' ||
    !optional(processStart) ||
    !optional(boot)
  ) {
    return null;
  }
  return {
    pid,
    hostname,
    startedAt,
    processStart: processStart as string | null,
    bootId: boot as string | null,
    nonce,
  };
}

type Verdict = 'alive' | 'stale' | 'elsewhere';

/** Whether the relay named in a lock still runs. A holder on another host cannot be checked. */
async function judge(holder: LockHolder | null, boot: string | null): Promise<Verdict> {
  if (holder === null) return 'stale'; // not a lock this code wrote: nothing to protect
  if (holder.hostname !== os.hostname()) return 'elsewhere';
  if (holder.bootId !== null && boot !== null && holder.bootId !== boot) return 'stale';
  if (!pidExists(holder.pid)) return 'stale';
  if (holder.processStart !== null) {
    const start = await processStartTime(holder.pid);
    if (start !== null && start !== holder.processStart) return 'stale'; // pid reused
  }
  return 'alive';
}

async function readIfPresent(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const NO_HARD_LINKS = ['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'];

/** link(2): false when `to` exists. */
async function linkIfAbsent(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (NO_HARD_LINKS.includes(code)) {
      throw new ConfigError(
        `${path.dirname(to)}: the filesystem refuses hard links (${code}), which the data-dir lock needs; put the data dir on a local filesystem`,
      );
    }
    throw err;
  }
}

async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function heldMessage(dir: string, file: string, holder: LockHolder, verdict: Verdict): string {
  const who = `pid ${holder.pid} on host ${holder.hostname}, started ${holder.startedAt}`;
  return verdict === 'alive'
    ? `${dir} is in use by another relay (${who}); one relay per data dir: stop it first`
    : `${dir} is locked by a relay on another host (${who}), which cannot be checked from here; ` +
        `if it no longer runs, delete ${file} and start again`;
}

export class DataDirLock {
  readonly #file: string;
  readonly #text: string;
  readonly #log: LockLog;
  #held = true;

  private constructor(file: string, text: string, log: LockLog) {
    this.#file = file;
    this.#text = text;
    this.#log = log;
  }

  /** Takes `<dir>/relay.lock`, or throws ERR_DATA_DIR_LOCKED naming the relay that holds it. */
  static async acquire(dir: string, log: LockLog, now: () => number = Date.now) {
    const file = path.join(dir, LOCK_FILE);
    const boot = await bootId();
    const mine: LockHolder = {
      pid: process.pid,
      hostname: os.hostname(),
      startedAt: new Date(now()).toISOString(),
      processStart: await processStartTime(process.pid),
      bootId: boot,
      nonce: randomBytes(12).toString('hex'),
    };
    const text = `${JSON.stringify(mine)}\n`;
    const temp = `${file}.${process.pid}.${mine.nonce}`;
    const handle = await open(temp, 'wx', PRIVATE_FILE_MODE);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        if (await linkIfAbsent(temp, file)) break;
        const current = await readIfPresent(file);
        if (current === null) continue; // released meanwhile
        const holder = parseHolder(current);
        const verdict = await judge(holder, boot);
        if (verdict !== 'stale') {
          throw new PosternError('ERR_DATA_DIR_LOCKED', heldMessage(dir, file, holder!, verdict));
        }
        if (await takeOver(file, current, temp, boot)) {
          log.warn(
            { path: file, holder: holder && { pid: holder.pid, startedAt: holder.startedAt } },
            'took over the data-dir lock of a relay that is gone',
          );
          break;
        }
      }
      if ((await readIfPresent(file)) !== text) {
        throw new PosternError(
          'ERR_DATA_DIR_LOCKED',
          `${dir}: could not take ${LOCK_FILE}: other relays keep starting on this data dir`,
        );
      }
      await fsyncDirectory(dir);
      return new DataDirLock(file, text, log);
    } finally {
      await unlinkIfPresent(temp);
    }
  }

  /** Removes the lock file, if it is still this relay's. */
  async release(): Promise<void> {
    if (!this.#held) return;
    this.#held = false;
    if ((await readIfPresent(this.#file)) !== this.#text) {
      this.#log.warn({ path: this.#file }, 'the data-dir lock was replaced while this relay ran');
      return;
    }
    await unlink(this.#file);
    await fsyncDirectory(path.dirname(this.#file));
  }
}

/**
 * Replaces the stale lock whose content is `stale` with ours (in `temp`). Returns false when
 * another relay is doing so, or did: the caller looks at the lock again.
 */
async function takeOver(
  file: string,
  stale: string,
  temp: string,
  boot: string | null,
): Promise<boolean> {
  const claim = `${file}.takeover-${createHash('sha256').update(stale).digest('hex').slice(0, 16)}`;
  if (!(await linkIfAbsent(temp, claim))) {
    const claimText = await readIfPresent(claim);
    if (claimText === null) return false;
    if ((await judge(parseHolder(claimText), boot)) === 'alive') {
      // Another relay is replacing this lock right now: wait until it has.
      const deadline = Date.now() + CLAIM_WAIT_MS;
      while (Date.now() < deadline && (await readIfPresent(file)) === stale) {
        await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
      }
      return false;
    }
    // Its claimer died halfway: clear the claim and look again.
    if ((await readIfPresent(claim)) === claimText) await unlinkIfPresent(claim);
    return false;
  }
  try {
    // Holding the claim, only this process may replace this lock, and its dead holder can no
    // longer remove it: if it is still the stale one, it stays so until the rename.
    if ((await readIfPresent(file)) !== stale) return false;
    await rename(temp, file);
    return true;
  } finally {
    await unlinkIfPresent(claim);
  }
}
