/**
 * What one client can hold open on the relay's port, so that idle sockets cannot use up its file
 * descriptors and lock out providers and agents:
 *
 * - every connection completes its first request head within `headTimeoutMs` of connecting, or
 *   is closed (Node's own `headersTimeout` only starts counting at the first byte, so a socket
 *   that never sends one was kept for ever);
 * - exposed directly, a client address (an IPv6 one by its /64) holds at most `maxPerAddress`
 *   open connections, upgraded tunnels and streams included; one more is closed at once;
 * - behind `--trust-proxy` every connection comes from the proxy, whose own address is not
 *   capped: there the cap is on requests in flight per forwarded address, answered 503 past it.
 *
 * Each refusal is counted in `postern_connections_refused_total`; the log gets one line per
 * LOG_EVERY_MS at most, however many are refused.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import { addressKey } from './address-key.ts';
import { clientAddress } from './client-address.ts';

export interface ConnectionLimitsOptions {
  headTimeoutMs: number;
  maxPerAddress: number;
  trustProxy: boolean;
  logger: Logger;
  metrics: Pick<Metrics, 'connectionsRefused' | 'headTimeouts'>;
  now: () => number;
}

/** At most one log line about refusals per this interval; it counts those in between. */
const LOG_EVERY_MS = 10_000;

const BUSY_BODY = JSON.stringify({
  error: {
    code: 'ERR_UNAVAILABLE',
    message: 'too many requests in flight from your address; retry later',
  },
});

/** Written, before any request is read, to a connection over the cap. */
const BUSY_CONNECTION = (() => {
  const body = JSON.stringify({
    error: {
      code: 'ERR_UNAVAILABLE',
      message: 'too many connections from your address; retry later',
    },
  });
  return (
    'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n' +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
})();

export class ConnectionLimits {
  readonly #opts: ConnectionLimitsOptions;
  /** Open connections (direct) or requests in flight (behind a proxy) per address key. */
  readonly #held = new Map<string, number>();
  /** Connections still waiting for their first complete request head. */
  readonly #heads = new Map<Socket, NodeJS.Timeout>();
  #refusedSinceLog = 0;
  #lastLogAt = -Infinity;

  constructor(opts: ConnectionLimitsOptions) {
    this.#opts = opts;
  }

  /** Watches every connection of `server`; call before it can accept one (same tick as listen). */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => this.#onConnection(socket));
    const headDone = (req: IncomingMessage) => this.#headDone(req.socket);
    server.prependListener('request', headDone);
    server.prependListener('upgrade', headDone);
  }

  /**
   * Behind `--trust-proxy`: counts the request against its forwarded address until its answer
   * is done, or answers 503 (and closes) when that address has `maxPerAddress` in flight.
   * Returns whether the request may be served. Directly exposed, every request may.
   */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.#opts.trustProxy) return true;
    const forwarded = clientAddress(req, true);
    // No forwarded address (the proxy's own health checks): the proxy itself is not capped.
    if (forwarded === (req.socket.remoteAddress ?? '')) return true;
    const key = addressKey(forwarded);
    if (!this.#take(key)) {
      this.#refused('requests', key);
      res.writeHead(503, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(BUSY_BODY),
        'retry-after': '1',
        connection: 'close',
      });
      res.end(BUSY_BODY);
      return false;
    }
    res.once('close', () => this.#release(key));
    return true;
  }

  #onConnection(socket: Socket): void {
    if (!this.#opts.trustProxy) {
      const peer = socket.remoteAddress;
      if (peer === undefined) {
        socket.destroy(); // already gone
        return;
      }
      const key = addressKey(peer);
      if (!this.#take(key)) {
        this.#refused('connections', key);
        // One short answer, then the descriptor is closed as soon as the kernel has it.
        socket.on('error', () => socket.destroy());
        socket.end(BUSY_CONNECTION, () => socket.destroy());
        return;
      }
      socket.once('close', () => this.#release(key));
    }
    const timer = setTimeout(() => {
      this.#heads.delete(socket);
      this.#opts.metrics.headTimeouts.inc();
      socket.destroy();
    }, this.#opts.headTimeoutMs);
    timer.unref();
    this.#heads.set(socket, timer);
    socket.once('close', () => this.#headDone(socket));
  }

  #headDone(socket: Socket): void {
    const timer = this.#heads.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#heads.delete(socket);
  }

  #take(key: string): boolean {
    const n = this.#held.get(key) ?? 0;
    if (n >= this.#opts.maxPerAddress) return false;
    this.#held.set(key, n + 1);
    return true;
  }

  #release(key: string): void {
    const n = (this.#held.get(key) ?? 0) - 1;
    if (n > 0) this.#held.set(key, n);
    else this.#held.delete(key);
  }

  #refused(limit: 'connections' | 'requests', key: string): void {
    this.#opts.metrics.connectionsRefused.inc({ limit });
    this.#refusedSinceLog++;
    const now = this.#opts.now();
    if (now - this.#lastLogAt < LOG_EVERY_MS) return;
    this.#opts.logger.warn(
      {
        limit,
        address: key,
        max: this.#opts.maxPerAddress,
        // This one and those refused since the last such line (one line per 10 s at most).
        refused: this.#refusedSinceLog,
      },
      limit === 'connections'
        ? 'connection refused: too many open from one address'
        : 'request refused: too many in flight from one forwarded address',
    );
    this.#refusedSinceLog = 0;
    this.#lastLogAt = now;
  }
}
