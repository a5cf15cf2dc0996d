/**
 * One agent connection after its JWT was accepted: the `hello`/`welcome` handshake, heartbeats
 * both ways, stall detection, and the hand-off of `deliver`/`ack` to dispatch.
 */
import type { Logger } from 'pino';
import type { WebSocket, RawData } from 'ws';
import { decodeAgentFrame, encodeFrame } from '../../shared/codec.ts';
import { ProtocolError } from '../../shared/errors.ts';
import {
  CloseCode,
  HANDSHAKE_TIMEOUT_MS,
  PROTOCOL_VERSION,
  type ChannelRef,
  type RelayFrame,
} from '../../shared/protocol.ts';
import { writeBatcher, type Corkable } from '../../shared/write-batch.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import type { Sink } from '../dispatch/sessions.ts';

/** A peer silent for this many heartbeat intervals is dead (or half-open) and is dropped. */
export const MISSED_HEARTBEATS = 3;

export interface SessionOptions {
  id: string;
  agentId: string;
  channels: ChannelRef[];
  heartbeatMs: number;
  window: number;
  ackTimeoutMs: number;
  dispatcher: Dispatcher;
  logger: Logger;
  /** Called on `hello`; returning false refuses the session (the agent was revoked). */
  onHello: (session: TunnelSession, agentVersion: string) => boolean;
  onClose: (session: TunnelSession) => void;
  now?: () => number;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class TunnelSession implements Sink {
  readonly id: string;
  readonly agentId: string;
  readonly window: number;
  readonly channels: readonly string[];
  readonly #ws: WebSocket;
  readonly #opts: SessionOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #ready = false;
  #greeted = false;
  #lastFrameAt: number;
  #timer: NodeJS.Timeout;
  #handshake: NodeJS.Timeout | null;
  readonly #batch: () => void;

  /** `socket` is the connection under `ws`, corked per event-loop turn to batch writes. */
  constructor(ws: WebSocket, socket: Corkable, opts: SessionOptions) {
    this.#batch = writeBatcher(socket);
    this.id = opts.id;
    this.agentId = opts.agentId;
    this.window = opts.window;
    this.channels = opts.channels.map((c) => c.id);
    this.#ws = ws;
    this.#opts = opts;
    this.#log = opts.logger.child({ agentId: opts.agentId, sessionId: opts.id });
    this.#now = opts.now ?? Date.now;
    this.#lastFrameAt = this.#now();
    this.#handshake = setTimeout(
      () => this.close(CloseCode.timeout, 'no hello in time'),
      HANDSHAKE_TIMEOUT_MS,
    );
    this.#timer = setInterval(() => this.#tick(), opts.heartbeatMs);
    ws.on('message', (data, isBinary) => this.#onMessage(toBuffer(data), isBinary));
    ws.on('close', (code) => this.#onClose(code));
    ws.on('error', (err) => this.#log.warn({ err: err.message }, 'tunnel socket error'));
  }

  /** Whether this session ever completed its handshake (said hello and got welcome). */
  get greeted(): boolean {
    return this.#greeted;
  }

  get open(): boolean {
    return this.#ready && this.#ws.readyState === this.#ws.OPEN;
  }

  send(frame: RelayFrame): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    this.#batch();
    this.#ws.send(encodeFrame(frame));
  }

  close(code: number, reason: string): void {
    if (this.#ws.readyState === this.#ws.OPEN || this.#ws.readyState === this.#ws.CONNECTING) {
      this.#ws.close(code, reason);
      // A peer that never answers the close handshake must not keep the socket alive.
      setTimeout(() => this.#ws.terminate(), 2_000).unref();
    }
  }

  /** Tells the agent to reconnect later (relay shutting down), then closes. */
  goAway(reconnectAfterMs: number): void {
    this.send({ type: 'goaway', reason: 'relay shutting down', reconnectAfterMs });
    this.close(CloseCode.goingAway, 'relay shutting down');
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    this.#lastFrameAt = this.#now();
    let frame;
    try {
      if (!isBinary) throw new ProtocolError('ERR_PROTOCOL_MALFORMED', 'text frames are not used');
      frame = decodeAgentFrame(data);
    } catch (err) {
      const message = err instanceof ProtocolError ? err.message : 'bad frame';
      this.#log.warn(
        { code: (err as ProtocolError).code },
        `protocol error from agent: ${message}`,
      );
      this.close(CloseCode.protocolError, message.slice(0, 120));
      return;
    }
    if (!this.#ready && frame.type !== 'hello') {
      this.close(CloseCode.protocolError, 'expected hello');
      return;
    }
    switch (frame.type) {
      case 'hello':
        if (this.#ready) {
          this.close(CloseCode.protocolError, 'hello sent twice');
          return;
        }
        if (frame.protocol !== PROTOCOL_VERSION) {
          this.close(CloseCode.unsupportedVersion, `relay speaks protocol ${PROTOCOL_VERSION}`);
          return;
        }
        clearTimeout(this.#handshake!);
        this.#handshake = null;
        // Ready before onHello, so that the endpoint counts this session as connected.
        this.#ready = true;
        this.#greeted = true;
        if (!this.#opts.onHello(this, frame.agentVersion)) {
          this.#ready = false;
          this.#greeted = false;
          this.close(CloseCode.revoked, 'agent revoked');
          return;
        }
        this.send({
          type: 'welcome',
          sessionId: this.id,
          heartbeatMs: this.#opts.heartbeatMs,
          window: this.window,
          channels: this.#opts.channels,
          answers: true,
        });
        this.#opts.dispatcher.attach(this);
        return;
      case 'ack':
        this.#opts.dispatcher.ack(this, frame);
        return;
      case 'ping':
        this.send({ type: 'pong', ts: frame.ts });
        return;
      case 'pong':
        return;
    }
  }

  #tick(): void {
    const silentMs = this.#now() - this.#lastFrameAt;
    if (silentMs > this.#opts.heartbeatMs * MISSED_HEARTBEATS) {
      this.#log.warn({ silentMs }, 'agent stopped answering heartbeats; dropping the session');
      this.#drop(CloseCode.timeout, 'heartbeats missed');
      return;
    }
    if (this.#ready && this.#opts.dispatcher.oldestInFlightMs(this) > this.#opts.ackTimeoutMs) {
      this.#log.warn('deliveries unacknowledged past the deadline; replacing the session');
      this.#drop(CloseCode.stalled, 'deliveries unacknowledged');
      return;
    }
    this.send({ type: 'ping', ts: this.#now() });
  }

  /**
   * Sends a close frame for a peer that may still read, then drops the socket at once without
   * waiting for the closing handshake: a half-open peer would never answer it.
   */
  #drop(code: number, reason: string): void {
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.close(code, reason);
    this.#ws.terminate();
  }

  #onClose(code: number): void {
    clearInterval(this.#timer);
    if (this.#handshake) clearTimeout(this.#handshake);
    const wasReady = this.#ready;
    this.#ready = false;
    if (wasReady) this.#opts.dispatcher.detach(this);
    this.#log.info({ code }, 'agent disconnected');
    this.#opts.onClose(this);
  }
}
