/**
 * A relay the test controls frame by frame, for attacks on the agent: a `ws` server on
 * 127.0.0.1:0 at `/tunnel` that accepts any upgrade (no JWT check), records the agent's frames
 * and sends whatever the test writes, valid or not. Bodies go out as a second WebSocket
 * fragment of the same message, so sixty 10 MB deliveries share one buffer in this process.
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { decodeAgentFrame, encodeFrame } from '../../shared/codec.ts';
import {
  MAX_AGENT_FRAME_BYTES,
  type AgentFrame,
  type ChannelRef,
  type HeaderPair,
} from '../../shared/protocol.ts';

export type Ack = Extract<AgentFrame, { type: 'ack' }>;

export interface Closed {
  code: number;
  reason: string;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** One agent connection, as the fake relay sees it. */
export class RelayConn {
  readonly frames: AgentFrame[] = [];
  readonly closed: Promise<Closed>;
  closedWith: Closed | undefined;
  #waiters: { match: (f: AgentFrame) => boolean; resolve: (f: AgentFrame) => void }[] = [];
  /** Called for every ack, in arrival order (the relay's own bookkeeping). */
  onAck: (ack: Ack) => void = () => undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('error', () => {
      // Writes into a socket the agent closed may fail; the close code is what counts.
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code: number, reason: Buffer) => {
        this.closedWith = { code, reason: reason.toString() };
        resolve(this.closedWith);
      });
    });
    ws.on('message', (data: RawData) => {
      const frame = decodeAgentFrame(toBuffer(data));
      this.frames.push(frame);
      if (frame.type === 'ack') this.onAck(frame);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(frame)) return true;
        w.resolve(frame);
        return false;
      });
    });
  }

  /** The first frame (already received or still to come) that matches. */
  waitFor(match: (f: AgentFrame) => boolean, timeoutMs = 30_000): Promise<AgentFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching frame from the agent in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  async ackFor(eventId: string, timeoutMs?: number): Promise<Ack> {
    const f = await this.waitFor((x) => x.type === 'ack' && x.eventId === eventId, timeoutMs);
    if (f.type !== 'ack') throw new Error('unreachable');
    return f;
  }

  acks(): Ack[] {
    return this.frames.filter((f): f is Ack => f.type === 'ack');
  }

  /**
   * Waits for the agent's `hello`, then grants `window` and `channels`; `answers` as a relay
   * that takes the app's answer in acks says it (absent: as a relay from before).
   */
  async welcome(window: number, channels: ChannelRef[], answers?: boolean): Promise<void> {
    await this.waitFor((f) => f.type === 'hello');
    // A long heartbeat: these tests never wait on one.
    this.ws.send(
      encodeFrame({
        type: 'welcome',
        sessionId: 'ses_fake',
        heartbeatMs: 60_000,
        window,
        channels,
        ...(answers === undefined ? {} : { answers }),
      }),
    );
  }

  /** Sends a deliver frame's fields (any JSON, valid or not) and its body. */
  sendDeliver(fields: Record<string, unknown>, body: Buffer = Buffer.alloc(0)): void {
    const json = Buffer.from(JSON.stringify(fields), 'utf8');
    const head = Buffer.allocUnsafe(4 + json.length);
    head.writeUInt32BE(json.length, 0);
    json.copy(head, 4);
    if (body.length === 0) {
      this.ws.send(head, { binary: true });
      return;
    }
    this.ws.send(head, { binary: true, fin: false });
    this.ws.send(body, { binary: true, fin: true });
  }
}

/** The fields of a valid deliver frame for `channel`; `extra` overrides any of them. */
export function deliverFields(
  eventId: string,
  channel: ChannelRef,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const headers: HeaderPair[] = [['content-type', 'application/json']];
  return {
    type: 'deliver',
    eventId,
    channelId: channel.id,
    channelName: channel.name,
    attempt: 1,
    method: 'POST',
    path: '',
    query: '',
    headers,
    originalUrl: `https://relay.example/h/${channel.id}`,
    remoteAddress: '203.0.113.9',
    receivedAt: 1_700_000_000_000,
    wantResponse: false,
    skipRoutes: [],
    replay: 0,
    ...extra,
  };
}

export class FakeRelay {
  readonly url: string;
  readonly connections: RelayConn[] = [];
  readonly #wss: WebSocketServer;
  #waiters: { index: number; resolve: (c: RelayConn) => void }[] = [];

  private constructor(wss: WebSocketServer) {
    this.#wss = wss;
    this.url = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    wss.on('connection', (ws) => {
      const conn = new RelayConn(ws);
      this.connections.push(conn);
      this.#waiters = this.#waiters.filter((w) => {
        if (w.index !== this.connections.length - 1) return true;
        w.resolve(conn);
        return false;
      });
    });
  }

  static async start(): Promise<FakeRelay> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: '/tunnel',
      maxPayload: MAX_AGENT_FRAME_BYTES,
      perMessageDeflate: false,
    });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return new FakeRelay(wss);
  }

  /** The `index`-th connection (0: the first), once the agent has dialled it. */
  connection(index: number, timeoutMs = 30_000): Promise<RelayConn> {
    const known = this.connections[index];
    if (known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no connection #${index} from the agent in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        index,
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
      });
    });
  }

  close(): Promise<void> {
    for (const c of this.connections) c.ws.terminate();
    return new Promise((resolve) => this.#wss.close(() => resolve()));
  }
}

/** Peak and current resident memory of a process, in MiB (Linux /proc). */
export async function memoryMiB(pid: number): Promise<{ peak: number; now: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) / 1024;
  };
  return { peak: kib('VmHWM'), now: kib('VmRSS') };
}
