/**
 * The agent's side of the tunnel: dials out, authenticates with a fresh JWT, says `hello`,
 * keeps heartbeats both ways, and reconnects for ever with capped full-jitter backoff. It holds
 * the relay to its `welcome` (RelayContract) and closes with 1002 on any protocol error; a
 * `deliver` that only breaks a field's bound is answered with a failed ack instead.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';
import { fullJitterBackoff } from '../shared/backoff.ts';
import { decodeRelayFrame, encodeFrame, withoutAnswer } from '../shared/codec.ts';
import { DeliverRefusedError, ProtocolError } from '../shared/errors.ts';
import { writeBatcher } from '../shared/write-batch.ts';
import {
  CloseCode,
  HANDSHAKE_TIMEOUT_MS,
  MAX_ERROR_CHARS,
  MAX_RELAY_FRAME_BYTES,
  PROTOCOL_VERSION,
  type AgentFrame,
  type RelayFrame,
} from '../shared/protocol.ts';
import { RelayContract } from './relay-contract.ts';

type Welcome = Extract<RelayFrame, { type: 'welcome' }>;
type Deliver = Extract<RelayFrame, { type: 'deliver' }>;

export interface TunnelClientOptions {
  /** ws:// or wss:// URL of the relay's `/tunnel`. */
  url: string;
  token: () => Promise<string>;
  agentVersion: string;
  logger: Logger;
  onWelcome: (welcome: Welcome) => void;
  /**
   * Called for each `deliver` the relay was entitled to send (see RelayContract); `reply` sends
   * the ack if this connection is still up, and frees the delivery's window slot.
   */
  onDeliver: (frame: Deliver, reply: (ack: AgentFrame) => void) => void;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  random?: () => number;
}

const MISSED_HEARTBEATS = 3;
/** After closing on a protocol error, the relay has this long to finish the close handshake. */
const CLOSE_GRACE_MS = 2_000;

/** A WebSocket close reason: at most 123 bytes (RFC 6455 §5.5), kept to printable ASCII. */
function closeReason(message: string): string {
  return message.replace(/[^\x20-\x7e]/g, '?').slice(0, 123);
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class TunnelClient {
  readonly #opts: TunnelClientOptions;
  readonly #log: Logger;
  #ws: WebSocket | null = null;
  #stopped = false;
  #failures = 0;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #connected = false;
  /** Set by reconnect(): the next close is ours, and the dial after it has no pause. */
  #reconnectNow = false;

  constructor(opts: TunnelClientOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
  }

  get connected(): boolean {
    return this.#connected;
  }

  start(): void {
    this.#stopped = false;
    void this.#connect();
  }

  /**
   * Closes the current connection (normal close) and dials again at once: the relay then sees
   * this agent connect, and sends what it held back for it (events parked for lack of a route).
   * Deliveries in progress keep running; the relay offers their events again on the new
   * connection and the agent joins them (see agent.ts) instead of sending a second request.
   */
  reconnect(reason: string): void {
    const ws = this.#ws;
    if (this.#stopped || !ws || ws.readyState !== WebSocket.OPEN) return;
    this.#reconnectNow = true;
    ws.close(CloseCode.normal, closeReason(reason));
    setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(CloseCode.normal, 'agent stopping');
      setTimeout(() => ws.terminate(), 2_000).unref();
    });
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    let token: string;
    try {
      token = await this.#opts.token();
    } catch (err) {
      this.#log.error({ err }, 'cannot sign a tunnel token');
      this.#retry(undefined);
      return;
    }
    const ws = new WebSocket(this.#opts.url, {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: MAX_RELAY_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    this.#ws = ws;
    let goawayMs: number | undefined;
    let lastFrameAt = Date.now();
    let heartbeat: NodeJS.Timeout | null = null;
    let welcomeTimer: NodeJS.Timeout | null = null;
    let batch: () => void = () => undefined;
    ws.once('upgrade', (res: IncomingMessage) => {
      batch = writeBatcher(res.socket);
    });
    const send = (frame: AgentFrame) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      batch();
      ws.send(encodeFrame(frame));
    };

    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 16 && chunks.push(c));
      res.on('end', () => {
        const detail = Buffer.concat(chunks).toString('utf8').slice(0, 300);
        if (res.statusCode === 401) {
          this.#log.error(
            { status: 401, detail },
            "the relay refused this agent's credentials: it may have been revoked or re-paired (pair again), or this host's clock is off",
          );
        } else {
          this.#log.error(
            { status: res.statusCode, detail },
            'the relay refused the tunnel connection',
          );
        }
      });
      ws.terminate();
    });
    ws.on('open', () => {
      send({ type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: this.#opts.agentVersion });
      welcomeTimer = setTimeout(() => {
        this.#log.warn('no welcome from the relay in time; reconnecting');
        ws.terminate();
      }, HANDSHAKE_TIMEOUT_MS);
    });
    // What the relay announced in `welcome`; null until then.
    let contract: RelayContract | null = null;
    // Whether the relay takes the app's answer in acks (`welcome.answers`).
    let answers = false;
    // Set once the relay broke the protocol: nothing it sends after that is read.
    let refusing = false;
    const breach = (err: ProtocolError) => {
      if (refusing) return;
      refusing = true;
      this.#log.error(
        { code: err.code },
        `protocol error from the relay: ${err.message}; closing the connection (1002)`,
      );
      ws.close(CloseCode.protocolError, closeReason(err.message));
      // Stop reading: what a misbehaving relay still sends stays in its own buffers, not ours.
      ws.pause();
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    };
    const outOfOrder = (what: string) =>
      breach(new ProtocolError('ERR_PROTOCOL_OUT_OF_ORDER', what));
    /** A deliver this agent cannot accept: one failed attempt for its event, the tunnel stays. */
    const refuse = (err: DeliverRefusedError) => {
      if (!contract) return outOfOrder('deliver before welcome');
      const slot = contract.admit(err.bodyBytes, null);
      if (slot instanceof ProtocolError) return breach(slot);
      this.#log.warn(
        { eventId: err.eventId, code: err.code },
        `refused a deliver frame: ${err.reason}; answered with a failed ack`,
      );
      slot.release();
      send({
        type: 'ack',
        eventId: err.eventId,
        outcome: 'failed',
        durationMs: 0,
        error: `deliver frame refused: ${err.reason}`.slice(0, MAX_ERROR_CHARS),
      });
    };

    ws.on('message', (data, isBinary) => {
      if (refusing) return;
      lastFrameAt = Date.now();
      let frame: RelayFrame;
      try {
        if (!isBinary)
          throw new ProtocolError('ERR_PROTOCOL_MALFORMED', 'text frames are not used');
        frame = decodeRelayFrame(toBuffer(data));
      } catch (err) {
        if (err instanceof DeliverRefusedError) return refuse(err);
        return breach(
          err instanceof ProtocolError
            ? err
            : new ProtocolError('ERR_PROTOCOL_MALFORMED', 'unreadable frame'),
        );
      }
      switch (frame.type) {
        case 'welcome': {
          if (contract) return outOfOrder('a second welcome');
          contract = new RelayContract(frame);
          answers = frame.answers === true;
          if (welcomeTimer) clearTimeout(welcomeTimer);
          this.#connected = true;
          this.#failures = 0;
          const hb = frame.heartbeatMs;
          heartbeat = setInterval(() => {
            if (Date.now() - lastFrameAt > hb * MISSED_HEARTBEATS) {
              this.#log.warn(
                { silentMs: Date.now() - lastFrameAt },
                'the relay stopped answering heartbeats; reconnecting',
              );
              ws.terminate();
              return;
            }
            send({ type: 'ping', ts: Date.now() });
          }, hb);
          this.#log.info(
            {
              sessionId: frame.sessionId,
              window: frame.window,
              channels: frame.channels.map((c) => c.name),
            },
            'connected to the relay',
          );
          this.#opts.onWelcome(frame);
          return;
        }
        case 'deliver': {
          if (!contract) return outOfOrder('deliver before welcome');
          const slot = contract.admit(frame.body.length, frame.channelId);
          if (slot instanceof ProtocolError) return breach(slot);
          // Routes match the channel as granted, not as this frame names it.
          const name = contract.grantedName(frame.channelId)!;
          const granted = name === frame.channelName ? frame : { ...frame, channelName: name };
          // The slot is the relay's until the ack leaves: only then may it send the next one.
          this.#opts.onDeliver(granted, (ack) => {
            slot.release();
            send(answers ? ack : withoutAnswer(ack));
          });
          return;
        }
        case 'ping':
          send({ type: 'pong', ts: frame.ts });
          return;
        case 'pong':
          return;
        case 'goaway':
          goawayMs = frame.reconnectAfterMs;
          this.#log.info(
            { reason: frame.reason, reconnectAfterMs: goawayMs },
            'the relay asked us to reconnect later',
          );
          return;
      }
    });
    let lastError: string | undefined;
    ws.on('error', (err) => {
      lastError = err.message;
      this.#log.debug({ err: err.message }, 'tunnel socket error');
    });
    ws.on('close', (code, reason) => {
      if (heartbeat) clearInterval(heartbeat);
      if (welcomeTimer) clearTimeout(welcomeTimer);
      const was = this.#connected;
      this.#connected = false;
      if (this.#ws === ws) this.#ws = null;
      if (this.#stopped) return;
      if (this.#reconnectNow) {
        this.#reconnectNow = false;
        this.#log.info({ code }, 'reconnecting to the relay (routes changed)');
        void this.#connect();
        return;
      }
      const why = reason.toString() || (code === 1006 ? 'connection lost' : `code ${code}`);
      const fields = { code, reason: why, ...(lastError ? { error: lastError } : {}) };
      if (was) this.#log.warn(fields, 'disconnected from the relay; reconnecting');
      else this.#log.warn(fields, 'could not connect to the relay; retrying');
      if (code === CloseCode.revoked) {
        this.#log.error(
          'this agent was revoked or re-paired on the relay; it will keep retrying until paired again',
        );
      }
      this.#retry(goawayMs);
    });
  }

  #retry(goawayMs: number | undefined): void {
    if (this.#stopped) return;
    const random = this.#opts.random ?? Math.random;
    const delay =
      goawayMs !== undefined
        ? goawayMs + Math.floor(random() * 1000)
        : fullJitterBackoff(this.#failures++, {
            baseMs: this.#opts.backoffBaseMs ?? 500,
            capMs: this.#opts.backoffCapMs ?? 30_000,
            random,
          });
    this.#log.debug({ delayMs: delay }, 'reconnecting after a pause');
    this.#reconnectTimer = setTimeout(() => void this.#connect(), delay);
  }
}
