/**
 * Starts the relay and the agent as real processes, the way a user would (through tsx and the
 * binaries' main.ts), on 127.0.0.1 with port 0. Readiness is read from their JSON logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { checkAnswer, loadOpenApi } from './openapi.ts';
import { relayStoreArgs, releaseDatabases } from './store.ts';

/** How long a process may take to exit after SIGTERM before the tests kill it. */
const KILL_AFTER_MS = 45_000;

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The admin API's document: `RelayHandle.api` checks every answer against it. */
const openApi = loadOpenApi();

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

/** A child process whose stdout JSON log lines are kept and can be waited for. */
export class Proc {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  /** Every raw line of stdout and stderr, for the secret-leak checks. */
  readonly raw: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

  /**
   * Runs `node --import tsx ...args`, or `command` as given (e.g. a built executable). One
   * process, not tsx's wrapper + child: a SIGKILL must reach the real relay or agent.
   */
  constructor(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT, command?: string[]) {
    const [file, ...argv] = command ?? [process.execPath, '--import', 'tsx', ...args];
    this.child = spawn(file!, argv, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.raw.push(line);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        return;
      }
      this.lines.push(parsed);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(parsed)) return true;
        w.resolve(parsed);
        return false;
      });
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.raw.push(line));
  }

  /** Resolves with the first log line (past or future) that matches; rejects on exit or timeout. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    const seen = this.lines.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `timed out waiting for a log line; last lines:\n${this.raw.slice(-10).join('\n')}`,
          ),
        );
      }, timeoutMs);
      const onExit = () => {
        clearTimeout(timer);
        reject(new Error(`process exited; last lines:\n${this.raw.slice(-10).join('\n')}`));
      };
      this.child.once('exit', onExit);
      this.#waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(l);
        },
      });
    });
  }

  waitForMsg(msg: string, timeoutMs?: number, from?: number): Promise<LogLine> {
    return this.waitFor((l) => l.msg === msg, timeoutMs, from);
  }

  /**
   * Sends `signal` and waits for the exit. A process still there KILL_AFTER_MS later is killed
   * (its exit code is then null, which a test expecting 0 reports): a shutdown that hangs
   * fails the test instead of holding the suite for ever.
   */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill(signal);
      if (signal !== 'SIGKILL') {
        const timer = setTimeout(() => this.child.kill('SIGKILL'), KILL_AFTER_MS);
        void this.exited.finally(() => clearTimeout(timer));
      }
    }
    return this.exited;
  }
}

export async function tempDir(prefix = 'postern-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface RelayHandle {
  proc: Proc;
  url: string;
  token: string;
  dataDir: string;
  /** Calls the admin API; throws on a non-2xx answer. */
  api<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

export interface RelayOptions {
  dataDir?: string;
  /** Port to listen on; default 0 (any free port). Reuse `url`'s port to restart in place. */
  port?: number;
  heartbeatMs?: number;
  env?: NodeJS.ProcessEnv;
  extraArgs?: string[];
  /** Runs the relay under this umask (through `sh -c 'umask …; exec …'`, same pid). */
  umask?: number;
  /**
   * PostgreSQL pass: the URL the relay is given instead of its data dir's database (e.g. that
   * database through a proxy); see store.ts.
   */
  databaseUrl?: string;
  /**
   * The log line to wait for (default 'relay listening'); 'listening; opening the store' for
   * a relay whose store cannot be reached yet.
   */
  listeningMsg?: string;
}

/**
 * Spawns `server/main.ts serve` on `dataDir` (and on its database in the PostgreSQL pass, see
 * store.ts) without waiting for anything.
 */
export async function spawnRelay(dataDir: string, opts: RelayOptions = {}): Promise<Proc> {
  const args = [
    path.join(ROOT, 'server/main.ts'),
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(opts.port ?? 0),
    '--data-dir',
    dataDir,
    '--log-level',
    'debug',
    ...(opts.heartbeatMs ? ['--heartbeat-ms', String(opts.heartbeatMs)] : []),
    ...(opts.databaseUrl === undefined
      ? await relayStoreArgs(dataDir)
      : ['--database-url', opts.databaseUrl]),
    ...(opts.extraArgs ?? []),
  ];
  const command =
    opts.umask === undefined
      ? undefined
      : [
          '/bin/sh',
          '-c',
          `umask ${opts.umask.toString(8).padStart(3, '0')} && exec "$0" "$@"`,
          process.execPath,
          '--import',
          'tsx',
          ...args,
        ];
  return new Proc(args, { POSTERN_ADMIN_TOKEN: '', ...opts.env }, ROOT, command);
}

/** Starts `server/main.ts serve` and waits until it listens. */
export async function startRelay(opts: RelayOptions = {}): Promise<RelayHandle> {
  const dataDir = opts.dataDir ?? (await tempDir());
  const proc = await spawnRelay(dataDir, opts);
  const ready = await proc.waitForMsg(opts.listeningMsg ?? 'relay listening');
  const url = String(ready['url']);
  const token =
    opts.env?.['POSTERN_ADMIN_TOKEN'] ||
    (await readFile(path.join(dataDir, 'admin-token'), 'utf8')).trim();
  const api = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`${url}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    // Every admin API answer a test sees, success or error, is one the document describes.
    if (p.startsWith('/api/')) checkAnswer(openApi, method, p, res.status, text);
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  return { proc, url, token, dataDir, api, stop: async () => void (await proc.kill()) };
}

export interface AgentHandle {
  proc: Proc;
  stateDir: string;
  configFile: string;
  stop(): Promise<void>;
}

export interface Route {
  channel: string;
  target: string;
  timeoutMs?: number;
  signingSecret?: string;
  /** The app's answer goes back to a sync channel's provider (route field `sync`). */
  sync?: boolean;
  /** Whether the relay keeps the app's answer of each attempt (route field `recordAnswer`). */
  recordAnswer?: boolean;
  name?: string;
  match?: {
    headers?: Record<string, string | string[]>;
    json?: Record<string, string | number | boolean | (string | number | boolean)[]>;
  };
}

/**
 * Adds an agent on the relay, pairs it through the CLI, and returns its state dir. The agent
 * will dial `dialUrl` (default: the relay itself; a proxy in the fault tests).
 */
export async function pairAgent(
  relay: RelayHandle,
  channels: string[],
  name = 'test-agent',
  dialUrl = relay.url,
  /** Runs between adding the agent and pairing it (e.g. waiting for other relays to see it). */
  beforePair?: (agentId: string) => Promise<void>,
): Promise<{ stateDir: string; agentId: string }> {
  const added = await relay.api<{ id: string; pairingCode: string }>('POST', '/api/agents', {
    name,
    channels,
  });
  await beforePair?.(added.id);
  const stateDir = await tempDir('postern-agent-');
  const proc = new Proc(
    [
      path.join(ROOT, 'agent/main.ts'),
      'pair',
      '--relay',
      dialUrl,
      '--code',
      added.pairingCode,
      '--state-dir',
      stateDir,
    ],
    {},
  );
  const code = await proc.exited;
  if (code !== 0) throw new Error(`pair failed: ${proc.raw.join('\n')}`);
  return { stateDir, agentId: added.id };
}

/** Writes the routes to a config file and runs the agent until it is connected. */
export async function startAgent(
  stateDir: string,
  routes: Route[],
  opts: { waitConnected?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<AgentHandle> {
  const configFile = path.join(stateDir, 'agent.yaml');
  await writeFile(configFile, JSON.stringify({ routes }));
  const proc = new Proc(
    [
      path.join(ROOT, 'agent/main.ts'),
      'run',
      '--config',
      configFile,
      '--state-dir',
      stateDir,
      '--log-level',
      'debug',
    ],
    opts.env ?? {},
  );
  if (opts.waitConnected !== false) await proc.waitForMsg('connected to the relay');
  return { proc, stateDir, configFile, stop: async () => void (await proc.kill()) };
}

/** Removes a directory; the databases of the data dirs in it go with it (store.ts). */
export async function removeDir(dir: string): Promise<void> {
  await releaseDatabases(dir);
  await rm(dir, { recursive: true, force: true });
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until the relay reports the event in `status`, and returns the event. */
export function waitForEventStatus(
  relay: RelayHandle,
  id: string,
  status: string,
  timeoutMs?: number,
): Promise<any> {
  return eventually(
    async () => {
      const e = await relay.api('GET', `/api/events/${id}`);
      return e.status === status ? e : undefined;
    },
    timeoutMs,
    `event ${id} to be ${status}`,
  );
}

/** Every event (of one channel, or of all), newest first, following the `next` cursor. */
export async function listEvents<T extends { id: string }>(
  relay: RelayHandle,
  channelId?: string,
): Promise<T[]> {
  const all: T[] = [];
  let before: string | null = null;
  for (let page = 0; page < 100; page++) {
    const q = new URLSearchParams({ limit: '500' });
    if (channelId !== undefined) q.set('channel', channelId);
    if (before !== null) q.set('before', before);
    const res: { events: T[]; next: string | null } = await relay.api('GET', `/api/events?${q}`);
    all.push(...res.events);
    if (res.next === null) return all;
    before = res.next;
  }
  throw new Error('more than 100 pages of events');
}
