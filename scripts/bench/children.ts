/**
 * Every process and temporary directory the benchmark makes, so that all of them go away at
 * the end, on an error, on Ctrl-C and on the overall timeout. Children are started as one
 * `node --import tsx` process each (no wrapper), so a signal reaches the real process.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (!alive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export class Children {
  readonly #procs = new Set<ChildProcess>();
  readonly #dirs = new Set<string>();

  /** Runs `node --import tsx <script> ...args` from the repository root. */
  spawnTs(script: string, args: string[], stdio: StdioOptions, env: NodeJS.ProcessEnv = {}) {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio,
    });
    this.#procs.add(child);
    child.once('exit', () => this.#procs.delete(child));
    // A spawn failure is reported by whoever waits on the child; never an unhandled error.
    child.on('error', () => {});
    return child;
  }

  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
    this.#dirs.add(dir);
    return dir;
  }

  /** Asks a child to stop (SIGTERM), and kills it if it has not after `graceMs`. */
  async stop(child: ChildProcess, graceMs = 5_000): Promise<void> {
    if (!alive(child)) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (alive(child)) child.kill('SIGKILL');
    }, graceMs);
    await exited(child);
    clearTimeout(timer);
  }

  /** Stops every child still running and removes every temporary directory. */
  async cleanup(): Promise<void> {
    await Promise.all([...this.#procs].map((c) => this.stop(c)));
    await Promise.all([...this.#dirs].map((d) => rm(d, { recursive: true, force: true })));
    this.#dirs.clear();
  }

  /** The same, synchronously and without grace: for `exit`, signals and the hard timeout. */
  killAllNow(): void {
    for (const child of this.#procs) if (alive(child)) child.kill('SIGKILL');
    this.#procs.clear();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
    this.#dirs.clear();
  }
}
