/**
 * A relay or agent process whose JSON log lines (pino, on stdout) can be waited for. Output is
 * always read, so a chatty child never blocks on a full pipe, and only the last lines are kept.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { exited } from './children.ts';
import { isRecord } from './ipc.ts';

const KEPT_LINES = 40;

export type LogLine = Record<string, unknown>;

export class LogProcess {
  readonly child: ChildProcess;
  readonly name: string;
  /** The last lines of stdout and stderr, for error messages. */
  readonly tail: string[] = [];
  #waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  constructor(child: ChildProcess, name: string) {
    this.child = child;
    this.name = name;
    if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => this.#line(l));
    if (child.stderr) createInterface({ input: child.stderr }).on('line', (l) => this.#keep(l));
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} did not start`);
    return this.child.pid;
  }

  #keep(line: string): void {
    this.tail.push(line);
    if (this.tail.length > KEPT_LINES) this.tail.shift();
  }

  #line(line: string): void {
    this.#keep(line);
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    if (!isRecord(parsed)) return;
    const log = parsed;
    this.#waiters = this.#waiters.filter((w) => (w.match(log) ? (w.resolve(log), false) : true));
  }

  /** Resolves with the next log line whose `msg` is `msg`; rejects on exit or timeout. */
  waitForMsg(msg: string, timeoutMs: number): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const fail = (why: string) =>
        reject(new Error(`${this.name}: ${why}; its last lines:\n${this.tail.join('\n')}`));
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        this.child.off('exit', onExit);
        fail(`no "${msg}" within ${timeoutMs} ms`);
      }, timeoutMs);
      const onExit = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        fail(`exited before "${msg}"`);
      };
      const waiter = {
        match: (l: LogLine) => l['msg'] === msg,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(l);
        },
      };
      this.child.once('exit', onExit);
      this.#waiters.push(waiter);
    });
  }

  /** Resolves with the exit code, or rejects after `timeoutMs`. */
  async exitCode(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name}: still running after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([exited(this.child), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.child.exitCode;
  }
}
