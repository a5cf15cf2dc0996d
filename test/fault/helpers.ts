/**
 * Shared pieces of the fault-injection suites: a TCP proxy that can cut or blackhole the
 * tunnel, pairing through another address than the relay's own, a relay started under a shell
 * (for resource limits), bounded webhook bursts, and exact delivery accounting.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import type { Received, TestApp } from '../helpers/app.ts';
import {
  eventually,
  Proc,
  ROOT,
  type LogLine,
  type RelayHandle,
  listEvents,
  pairAgent,
} from '../helpers/processes.ts';
import { relayStoreArgs } from '../helpers/store.ts';

// ---------------------------------------------------------------------------------------------
// TCP proxy

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** A blackholed pair forwards nothing, not even a close: both ends see a silent peer. */
  blackholed: boolean;
}

/**
 * A TCP proxy on 127.0.0.1:0 in front of `target`. `cutAll()` resets every open connection;
 * `blackhole()` keeps every connection (open and new) but drops all bytes both ways and never
 * propagates a close; `refuse()` resets every open connection and each new one at once (a
 * server that is down); `heal()` forwards new connections again (blackholed ones stay dead, as
 * half-open connections do).
 */
export class TcpProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  #blackholing = false;
  #refusing = false;
  /** Connections refused by `refuse()` so far. */
  refused = 0;
  /** Connections accepted so far. */
  accepted = 0;
  url = '';

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Starts a proxy to the host and port of `targetUrl` (http://, or postgres:// on 5432). */
  static async start(targetUrl: string): Promise<TcpProxy> {
    const u = new URL(targetUrl);
    const port = Number(u.port) || (u.protocol === 'postgres:' ? 5432 : 80);
    const proxy = new TcpProxy({ host: u.hostname, port });
    proxy.#server.listen(0, '127.0.0.1');
    await once(proxy.#server, 'listening');
    proxy.url = `http://127.0.0.1:${(proxy.#server.address() as AddressInfo).port}`;
    return proxy;
  }

  /** Connections currently open (both ends alive), blackholed ones included. */
  get open(): number {
    return this.#pairs.size;
  }

  #accept(client: net.Socket): void {
    if (this.#refusing) {
      this.refused++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect(this.#target.port, this.#target.host);
    const pair: Pair = { client, upstream, blackholed: this.#blackholing };
    this.#pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on('data', (chunk: Buffer) => {
        if (pair.blackholed || to.destroyed) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => {
        if (!pair.blackholed) to.end();
      });
      from.on('close', () => {
        if (pair.blackholed) {
          // The other end never learns of it; it is dropped only when both are gone.
          if (to.destroyed) this.#pairs.delete(pair);
          return;
        }
        to.destroy();
        this.#pairs.delete(pair);
      });
      from.on('error', () => undefined);
    };
    forward(client, upstream);
    forward(upstream, client);
  }

  /** Resets every open connection; returns how many there were. */
  cutAll(): number {
    const n = this.#pairs.size;
    for (const pair of this.#pairs) {
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
    this.#pairs.clear();
    return n;
  }

  blackhole(): void {
    this.#blackholing = true;
    for (const pair of this.#pairs) pair.blackholed = true;
  }

  /** Resets every open connection and refuses new ones until `heal()`; returns how many were open. */
  refuse(): number {
    this.#refusing = true;
    return this.cutAll();
  }

  heal(): void {
    this.#blackholing = false;
    this.#refusing = false;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.#pairs.clear();
    await closed;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Like `pairAgent`, but the agent dials `dialUrl` (e.g. a proxy) instead of the relay. */
export function pairAgentVia(
  relay: RelayHandle,
  dialUrl: string,
  channels: string[],
  name = 'fault-agent',
): Promise<{ stateDir: string; agentId: string }> {
  return pairAgent(relay, channels, name, dialUrl);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Starts `server/main.ts serve` through `bash -c`, after `shellPrefix` (e.g. `ulimit -f 256`),
 * with `exec` so that the relay is the process we hold. Reads its URL from 'relay listening'.
 */
export async function startRelayInShell(opts: {
  dataDir: string;
  shellPrefix: string;
  port?: number;
}): Promise<RelayHandle> {
  const argv = [
    process.execPath,
    '--import',
    'tsx',
    path.join(ROOT, 'server/main.ts'),
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(opts.port ?? 0),
    '--data-dir',
    opts.dataDir,
    '--log-level',
    'debug',
    ...(await relayStoreArgs(opts.dataDir)),
  ];
  const script = `${opts.shellPrefix}; exec ${argv.map(shellQuote).join(' ')}`;
  const proc = new Proc([], { POSTERN_ADMIN_TOKEN: '' }, ROOT, ['bash', '-c', script]);
  const ready = await proc.waitForMsg('relay listening');
  const url = String(ready['url']);
  const token = (await readFile(path.join(opts.dataDir, 'admin-token'), 'utf8')).trim();
  const api = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  return {
    proc,
    url,
    token,
    dataDir: opts.dataDir,
    api,
    stop: async () => void (await proc.kill()),
  };
}

/** Log lines of `proc` from index `from` with this message. */
export function linesWith(proc: Proc, msg: string, from = 0): LogLine[] {
  return proc.lines.slice(from).filter((l) => l.msg === msg);
}

/** A log line's own timestamp (pino isoTime), in ms since the epoch. */
export function lineTime(line: LogLine): number {
  const t = Date.parse(String(line['time']));
  if (Number.isNaN(t)) throw new Error(`log line without a time: ${JSON.stringify(line)}`);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Apps and ports

/** A port on 127.0.0.1 where nothing listens (taken from the kernel, then released). */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Listens again with the app's own server (same handler, same `received`) on `port`. */
export async function listenAppOn(app: TestApp, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    app.server.once('error', onError);
    app.server.listen(port, '127.0.0.1', () => {
      app.server.off('error', onError);
      resolve();
    });
  });
  app.url = `http://127.0.0.1:${port}`;
}

/** Closes the app's server (and its open connections) but keeps the app for `listenAppOn`. */
export function closeAppServer(app: TestApp): Promise<void> {
  return new Promise((resolve) => {
    app.server.closeAllConnections();
    app.server.close(() => resolve());
  });
}

// ---------------------------------------------------------------------------------------------
// Relay API views

export interface Attempt {
  at: string;
  agentId: string;
  outcome: string;
  status: number | null;
  durationMs: number;
  error: string | null;
}

export interface EventView {
  id: string;
  channelId: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  attempts: Attempt[];
}

export function getEvent(relay: RelayHandle, id: string): Promise<EventView> {
  return relay.api<EventView>('GET', `/api/events/${id}`);
}

/** Polls the event until `done` holds; returns it. */
export function waitForEvent(
  relay: RelayHandle,
  id: string,
  done: (e: EventView) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<EventView> {
  return eventually(
    async () => {
      const e = await getEvent(relay, id);
      return done(e) ? e : undefined;
    },
    timeoutMs,
    `event ${id}: ${what}`,
  );
}

/** Every event of a channel (see listEvents). */
export function listChannel(relay: RelayHandle, channelId: string): Promise<EventView[]> {
  return listEvents<EventView>(relay, channelId);
}

/** Waits until every event of `ids` is `delivered` on the relay. */
export async function waitAllDelivered(
  relay: RelayHandle,
  channelId: string,
  ids: Iterable<string>,
  timeoutMs: number,
): Promise<void> {
  const wanted = new Set(ids);
  let last = '';
  try {
    await eventually(
      async () => {
        const events = (await listChannel(relay, channelId)).filter((e) => wanted.has(e.id));
        const pending = events.filter((e) => e.status !== 'delivered');
        const byStatus = new Map<string, number>();
        for (const e of pending) byStatus.set(e.status, (byStatus.get(e.status) ?? 0) + 1);
        const statuses = [...byStatus].map(([status, n]) => `${n} ${status}`).join(', ');
        last =
          `${events.length} of ${wanted.size} listed, ${pending.length} not delivered` +
          (pending.length > 0 ? `: ${statuses}` : '');
        return events.length === wanted.size && pending.length === 0 ? true : undefined;
      },
      timeoutMs,
      `${wanted.size} events to be delivered`,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (${last})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Bursts

export interface Sent {
  seq: number;
  body: Buffer;
  status: number | null;
  /** The event id from a 202 answer. */
  id: string | null;
  retryAfter: string | null;
  error: string | null;
}

export interface BurstOptions {
  url: string;
  count: number;
  inFlight: number;
  dispatcher: Agent;
  /** No request starts after this long (ms from the start). */
  deadlineMs: number;
  label: string;
  /** Pads each body to about this many bytes. */
  bodyBytes?: number;
  /** Paces the starts: request `seq` starts no earlier than `seq / ratePerSec` s in. */
  ratePerSec?: number;
  /** Called after each answer; return true to start no further request. */
  onAnswer?: (s: Sent) => boolean | void;
}

export function idFromBody(text: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || !('id' in parsed)) return null;
  return typeof parsed.id === 'string' ? parsed.id : null;
}

export function makeBody(label: string, seq: number, bodyBytes = 0): Buffer {
  const base = { test: label, seq, nonce: randomBytes(8).toString('hex') };
  const bare = JSON.stringify({ ...base, pad: '' });
  const pad = 'x'.repeat(Math.max(0, bodyBytes - bare.length));
  return Buffer.from(JSON.stringify({ ...base, pad }));
}

/** Sends up to `count` webhooks, `inFlight` at a time, each body unique. Bounded in time. */
export async function burst(opts: BurstOptions): Promise<Sent[]> {
  const sent: Sent[] = [];
  const started = Date.now();
  const deadline = started + opts.deadlineMs;
  let next = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && next < opts.count && Date.now() < deadline) {
      const seq = next++;
      if (opts.ratePerSec !== undefined) {
        const wait = started + (seq * 1000) / opts.ratePerSec - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const s: Sent = {
        seq,
        body: makeBody(opts.label, seq, opts.bodyBytes),
        status: null,
        id: null,
        retryAfter: null,
        error: null,
      };
      try {
        const res = await request(opts.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: s.body,
          dispatcher: opts.dispatcher,
        });
        const text = await res.body.text();
        s.status = res.statusCode;
        const ra = res.headers['retry-after'];
        s.retryAfter = ra === undefined ? null : String(ra);
        if (res.statusCode === 202) s.id = idFromBody(text);
      } catch (err) {
        s.error = (err as Error).message;
      }
      sent.push(s);
      if (opts.onAnswer?.(s) === true) stop = true;
    }
  };
  await Promise.all(Array.from({ length: opts.inFlight }, worker));
  return sent.sort((a, b) => a.seq - b.seq);
}

/** event id → body, for every webhook answered 202 with an id; fails on a repeated id. */
export function acknowledged(sent: readonly Sent[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const s of sent) {
    if (s.status !== 202 || s.id === null) continue;
    if (out.has(s.id)) throw new Error(`event id ${s.id} was answered for two requests`);
    out.set(s.id, s.body);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Accounting

export interface Accounting {
  acknowledged: number;
  /** Acknowledged ids the app received at least once. */
  delivered: number;
  /** Acknowledged ids the app never received. */
  lost: string[];
  /** Requests beyond the first for an acknowledged id (same id, by construction). */
  duplicates: number;
  /** Requests whose event id was never acknowledged in this set. */
  foreign: string[];
  /** Requests whose body is not the body sent for their id. */
  wrongBody: string[];
  /** Bodies that arrived under more than one event id. */
  reIdentified: number;
}

export function eventIdOf(req: Received): string {
  const id = req.headers['x-postern-event-id'];
  return typeof id === 'string' ? id : '';
}

/** What the app received, against what was acknowledged. `received` may hold other sets. */
export function account(acked: Map<string, Buffer>, received: readonly Received[]): Accounting {
  const count = new Map<string, number>();
  const foreign: string[] = [];
  const wrongBody: string[] = [];
  const idsByBody = new Map<string, Set<string>>();
  for (const req of received) {
    const id = eventIdOf(req);
    const body = acked.get(id);
    if (body === undefined) {
      foreign.push(id);
      continue;
    }
    count.set(id, (count.get(id) ?? 0) + 1);
    if (!req.body.equals(body)) wrongBody.push(id);
    const key = req.body.toString('base64');
    const ids = idsByBody.get(key) ?? new Set<string>();
    ids.add(id);
    idsByBody.set(key, ids);
  }
  let duplicates = 0;
  for (const n of count.values()) duplicates += n - 1;
  return {
    acknowledged: acked.size,
    delivered: count.size,
    lost: [...acked.keys()].filter((id) => !count.has(id)),
    duplicates,
    foreign,
    wrongBody,
    reIdentified: [...idsByBody.values()].filter((s) => s.size > 1).length,
  };
}

export function describeAccounting(label: string, sent: number, a: Accounting): string {
  return (
    `${label}: ${sent} sent, ${a.acknowledged} acknowledged (202), ${a.delivered} delivered, ` +
    `${a.lost.length} lost, ${a.duplicates} duplicates (same id), ` +
    `${a.reIdentified} under another id`
  );
}

/** An undici dispatcher for bursts, with generous timeouts for a busy machine. */
export function burstDispatcher(connections: number): Agent {
  return new Agent({
    connections,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
    connectTimeout: 10_000,
  });
}
