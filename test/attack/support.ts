/**
 * Shared tools of the attack suites: hand-written HTTP over raw TCP (so that what is, and is
 * not, sent is exactly ours), raw tunnel frames, a frame reader for a WebSocket, typed admin
 * API reads, and a look into /proc to count the sockets the relay process really holds.
 */
import assert from 'node:assert/strict';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import type { RawData, WebSocket } from 'ws';
import { decodeRelayFrame, encodeFrame } from '../../shared/codec.ts';
import type { RelayFrame } from '../../shared/protocol.ts';
import type { RelayHandle } from '../helpers/processes.ts';

export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

// ---- HTTP by hand ---------------------------------------------------------------------------

export interface RawResponse {
  /** The status of the first response, or 0 when the relay closed without answering. */
  status: number;
  head: string;
  body: string;
  /** Whether the relay closed the connection (after answering, or instead of it). */
  closed: boolean;
}

/**
 * Opens a TCP connection to the relay and resolves once it is connected; from `localAddress`
 * (another loopback address, e.g. 127.0.0.2) when given, to count as another client.
 */
export function tcp(relayUrl: string, sockets: Socket[], localAddress?: string): Promise<Socket> {
  const { hostname, port } = new URL(relayUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: hostname,
      port: Number(port),
      ...(localAddress === undefined ? {} : { localAddress }),
    });
    sockets.push(socket);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Speaks HTTP/1.1 by hand: `write` gets the connected socket; resolves with the first response
 * once it is complete (or `status: 0` if the relay closes first), or fails after `timeoutMs`.
 */
export function rawHttp(
  relayUrl: string,
  sockets: Socket[],
  write: (s: Socket) => void,
  timeoutMs = 15_000,
): Promise<RawResponse> {
  const { hostname, port } = new URL(relayUrl);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    sockets.push(socket);
    let data = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no complete response in ${timeoutMs} ms; got: ${data.toString('latin1')}`));
    }, timeoutMs);
    const finish = (r: RawResponse): void => {
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const tryParse = (closed: boolean): void => {
      if (done) return;
      const text = data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) {
        if (closed) finish({ status: 0, head: text, body: '', closed });
        return;
      }
      const head = text.slice(0, end);
      const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? '0');
      let body = text.slice(end + 4);
      if (chunked) {
        if (!body.includes('\r\n0\r\n\r\n') && !body.startsWith('0\r\n\r\n') && !closed) return;
        body = dechunk(body);
      } else if (body.length < length && !closed) {
        return;
      }
      // An answer that announces the close is complete once the relay has closed, too.
      if (!closed && /\r\nconnection: *close/i.test(head)) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? '0');
      finish({ status, head, body: chunked ? body : body.slice(0, length), closed });
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      tryParse(false);
    });
    socket.on('close', () => tryParse(true));
    socket.on('error', () => {
      // A reset while or after answering: 'close' follows and decides.
    });
    socket.once('connect', () => write(socket));
  });
}

function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (let guard = 0; guard < 10_000; guard++) {
    const eol = text.indexOf('\r\n', at);
    if (eol < 0) return out;
    const size = parseInt(text.slice(at, eol), 16);
    if (!Number.isFinite(size) || size === 0) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
  return out;
}

/** A request head: request line, `Host`, the given header lines, and the blank line. */
export function head(method: string, target: string, headers: string[] = []): string {
  return [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...headers, '', ''].join('\r\n');
}

/** A complete request with a JSON (or any text) body and `Connection: close`. */
export function requestText(
  method: string,
  target: string,
  headers: string[],
  body?: string | Buffer,
): Buffer {
  const bytes = body === undefined ? Buffer.alloc(0) : Buffer.from(body);
  const lines = [...headers, 'Connection: close'];
  if (body !== undefined) lines.push(`Content-Length: ${bytes.length}`);
  return Buffer.concat([Buffer.from(head(method, target, lines), 'latin1'), bytes]);
}

/** The stable error code of a JSON error answer, or a description of what came instead. */
export function errorCode(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'error' in parsed) {
      const error: unknown = parsed.error;
      if (typeof error === 'object' && error !== null && 'code' in error) {
        return String(error.code);
      }
    }
  } catch {
    // fall through
  }
  return `(not an error answer: ${text.slice(0, 200)})`;
}

export async function healthz(relayUrl: string): Promise<number> {
  const res = await fetch(`${relayUrl}/healthz`);
  await res.arrayBuffer();
  return res.status;
}

// ---- typed admin API reads ------------------------------------------------------------------

export interface ChannelView {
  id: string;
  name: string;
  createdAt: string;
  ingressUrl: string;
}

export interface EventView {
  id: string;
  channelId: string;
  status: string;
  method: string;
  path: string;
  query: string;
  attemptCount: number;
}

export interface EventDetail extends EventView {
  headers: [string, string][];
  body: string;
  attempts: unknown[];
}

export async function listChannels(relay: RelayHandle): Promise<ChannelView[]> {
  return (await relay.api<{ channels: ChannelView[] }>('GET', '/api/channels')).channels;
}

/** Every event (newest first); fails if there are more than one page of 500. */
export async function listEvents(relay: RelayHandle, query = ''): Promise<EventView[]> {
  const page = await relay.api<{ events: EventView[]; next: string | null }>(
    'GET',
    `/api/events?limit=500${query}`,
  );
  assert.equal(page.next, null, 'fewer than 500 events, so one page holds them all');
  return page.events;
}

export function idFrom(text: string): string {
  const parsed: unknown = JSON.parse(text);
  const id =
    typeof parsed === 'object' && parsed !== null && 'id' in parsed ? parsed.id : undefined;
  assert.equal(typeof id, 'string', `the answer carries an id: ${text}`);
  return String(id);
}

// ---- tunnel frames ---------------------------------------------------------------------------

/** A frame as `shared/codec.ts` lays it out: u32 JSON length, JSON text, body bytes. */
export function rawFrame(json: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const fields = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(fields.length, 0);
  return Buffer.concat([len, fields, body]);
}

export const HELLO = encodeFrame({ type: 'hello', protocol: 1, agentVersion: 'attack-test' });

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export interface Closed {
  code: number;
  reason: string;
  /** performance.now() when the close was seen. */
  at: number;
}

/**
 * Keeps every frame the relay sends on one WebSocket, decoded, and lets a test wait for the
 * next one that matches. Also records how and when the socket closed.
 */
export class FrameReader {
  readonly frames: RelayFrame[] = [];
  readonly closed: Promise<Closed>;
  closedWith: Closed | undefined;
  /** Frames that did not decode (the relay must never send one). */
  readonly undecodable: string[] = [];
  #waiters: { match: (f: RelayFrame) => boolean; resolve: (f: RelayFrame) => void }[] = [];
  /** Answer every relay `ping` with a `pong`, as a live agent does. */
  answerPings = false;

  constructor(readonly ws: WebSocket) {
    ws.on('error', () => {
      // Writing into a socket the relay closed may fail; the close code is what counts.
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code: number, reason: Buffer) => {
        this.closedWith = { code, reason: reason.toString(), at: performance.now() };
        resolve(this.closedWith);
      });
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      let frame: RelayFrame;
      try {
        if (!isBinary) throw new Error('text frame');
        frame = decodeRelayFrame(toBuffer(data));
      } catch (err) {
        this.undecodable.push(String(err));
        return;
      }
      this.frames.push(frame);
      if (this.answerPings && frame.type === 'ping') {
        ws.send(encodeFrame({ type: 'pong', ts: frame.ts }));
      }
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(frame)) return true;
        w.resolve(frame);
        return false;
      });
    });
  }

  /** The first frame from now on that matches; rejects on close or timeout. */
  next(match: (f: RelayFrame) => boolean, timeoutMs = 10_000): Promise<RelayFrame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching frame from the relay in ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: (f: RelayFrame) => {
          cleanup();
          resolve(f);
        },
      };
      const onClose = (code: number) => {
        cleanup();
        reject(new Error(`socket closed (${code}) before a matching frame arrived`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        this.ws.off('close', onClose);
      };
      this.#waiters.push(waiter);
      this.ws.once('close', onClose);
    });
  }

  /** Resolves with the close, or 'timeout' after `timeoutMs`. */
  closeWithin(timeoutMs: number): Promise<Closed | 'timeout'> {
    return Promise.race([
      this.closed,
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref()),
    ]);
  }
}

/** Sends `hello` and waits for `welcome`. */
export async function sayHello(
  reader: FrameReader,
): Promise<Extract<RelayFrame, { type: 'welcome' }>> {
  const answer = reader.next((f) => f.type !== 'ping');
  reader.ws.send(HELLO);
  const frame = await answer;
  assert.equal(frame.type, 'welcome', `the relay answers hello with welcome, got ${frame.type}`);
  if (frame.type !== 'welcome') throw new Error('unreachable');
  return frame;
}

export async function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return;
  const done = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  if (ws.readyState === ws.OPEN) ws.close(1000, 'test done');
  else ws.terminate();
  const timer = setTimeout(() => ws.terminate(), 2_000);
  await done;
  clearTimeout(timer);
}

// ---- what the relay process holds (Linux /proc) --------------------------------------------

/** The inodes of every socket the process has open. */
async function socketInodes(pid: number): Promise<Set<string>> {
  const inodes = new Set<string>();
  const dir = `/proc/${pid}/fd`;
  for (const fd of await readdir(dir)) {
    let target: string;
    try {
      target = await readlink(`${dir}/${fd}`);
    } catch {
      continue; // closed between readdir and readlink
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]!);
  }
  return inodes;
}

/** A client socket's own end as `address:port` (IPv4), the key `connectionsHeldByRelay` takes. */
export function endpointOf(socket: Socket): string {
  return `${socket.localAddress ?? '?'}:${socket.localPort ?? -1}`;
}

/** `0100007F:1F90` (little-endian IPv4 and port, as /proc/net/tcp writes them) as `127.0.0.1:8080`. */
function procEndpoint(hex: string): string {
  const [ip = '', port = ''] = hex.split(':');
  const bytes = [6, 4, 2, 0].map((i) => Number.parseInt(ip.slice(i, i + 2), 16));
  return `${bytes.join('.')}:${Number.parseInt(port, 16)}`;
}

/**
 * How many of the given client connections (by their own address and port, see `endpointOf`)
 * the relay process has accepted and still holds open: its own end of each, found in
 * /proc/net/tcp by the relay's port and the client's endpoint, whose inode is one of the relay's
 * file descriptors.
 */
export async function connectionsHeldByRelay(
  pid: number,
  relayPort: number,
  clients: ReadonlySet<string>,
): Promise<number> {
  const inodes = await socketInodes(pid);
  const table = await readFile('/proc/net/tcp', 'utf8');
  let held = 0;
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10) continue;
    const local = Number.parseInt(cols[1]!.split(':')[1]!, 16);
    const state = cols[3];
    // 01 = ESTABLISHED: the relay's end is open and the client's has not been closed.
    if (
      local === relayPort &&
      clients.has(procEndpoint(cols[2]!)) &&
      state === '01' &&
      inodes.has(cols[9]!)
    ) {
      held++;
    }
  }
  return held;
}
