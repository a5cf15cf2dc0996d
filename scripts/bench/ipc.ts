/**
 * The messages between the benchmark and its two helper processes (the target app and the load
 * generator), and a small request/reply client over the Node IPC channel. Every message is
 * checked on arrival: IPC carries JSON from another process, so it is parsed, not cast.
 */
import type { ChildProcess } from 'node:child_process';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function num(r: Record<string, unknown>, key: string): number {
  const v = r[key];
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new TypeError(`${key}: expected a number`);
  return v;
}

export function numOrNull(r: Record<string, unknown>, key: string): number | null {
  return r[key] === null ? null : num(r, key);
}

export function str(r: Record<string, unknown>, key: string): string {
  const v = r[key];
  if (typeof v !== 'string') throw new TypeError(`${key}: expected a string`);
  return v;
}

export function strings(r: Record<string, unknown>, key: string): string[] {
  const v = r[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new TypeError(`${key}: expected a list of strings`);
  }
  return v;
}

export function record(r: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = r[key];
  if (!isRecord(v)) throw new TypeError(`${key}: expected an object`);
  return v;
}

/** `{type: 'ready', port?}`: the helper has started (the app also says where it listens). */
export function readReady(msg: unknown): { port: number | null } | null {
  if (!isRecord(msg) || msg['type'] !== 'ready') return null;
  return { port: typeof msg['port'] === 'number' ? msg['port'] : null };
}

/** Sends `{...request, rid}` and resolves with the decoded `{type: 'reply', rid, body}`. */
export class IpcClient {
  readonly #child: ChildProcess;
  readonly #name: string;
  #next = 1;
  readonly #pending = new Map<
    number,
    { resolve: (body: unknown) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }
  >();

  constructor(child: ChildProcess, name: string) {
    this.#child = child;
    this.#name = name;
    child.on('message', (msg: unknown) => {
      if (!isRecord(msg) || typeof msg['rid'] !== 'number') return;
      const waiter = this.#pending.get(msg['rid']);
      if (!waiter) return;
      this.#pending.delete(msg['rid']);
      clearTimeout(waiter.timer);
      if (msg['type'] === 'reply') waiter.resolve(msg['body']);
      else waiter.reject(new Error(`${name}: ${String(msg['message'] ?? 'request failed')}`));
    });
    child.once('exit', (code, signal) => {
      for (const [rid, waiter] of this.#pending) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`${name} exited (${signal ?? code}) during request ${rid}`));
      }
      this.#pending.clear();
    });
  }

  request<T>(
    message: { type: string; [key: string]: Json },
    decode: (body: unknown) => T,
    timeoutMs: number,
  ): Promise<T> {
    const rid = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        reject(new Error(`${this.#name}: no answer to ${message.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(rid, {
        resolve: (body) => {
          try {
            resolve(decode(body));
          } catch (err) {
            reject(new Error(`${this.#name}: bad ${message.type} reply: ${String(err)}`));
          }
        },
        reject,
        timer,
      });
      this.#child.send({ ...message, rid }, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.#pending.delete(rid);
        reject(err);
      });
    });
  }
}

/**
 * The helper side: answers each `{type, rid, ...}` from the parent with the handler's result,
 * and exits when the parent goes away so no helper outlives a killed benchmark.
 */
export function serveIpc(
  handle: (msg: Record<string, unknown>) => Json | Promise<Json>,
): (message: { type: string; [key: string]: Json }) => void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('this script is a helper of scripts/bench.ts; run `npm run bench`');
  process.on('disconnect', () => process.exit(0));
  process.on('message', (msg: unknown) => {
    if (!isRecord(msg) || typeof msg['rid'] !== 'number') return;
    const rid = msg['rid'];
    Promise.resolve()
      .then(() => handle(msg))
      .then(
        (body) => send({ type: 'reply', rid, body }),
        (err: unknown) =>
          send({ type: 'failed', rid, message: err instanceof Error ? err.message : String(err) }),
      );
  });
  return (message) => void send(message);
}
