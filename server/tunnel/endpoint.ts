/**
 * The `/tunnel` endpoint: authenticates the HTTP upgrade with the agent's JWT (401 and a
 * destroyed socket otherwise, before any WebSocket exists), then runs a `TunnelSession`.
 * Keeps the live sessions per agent so that revoking an agent closes them at once.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { isPosternError } from '../../shared/errors.ts';
import { CloseCode, MAX_AGENT_FRAME_BYTES, type ChannelRef } from '../../shared/protocol.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import { randomId } from '../ids.ts';
import type { AgentRecord, ChannelRecord } from '../store/types.ts';
import type { AgentTokenVerifier } from './auth.ts';
import { TunnelSession } from './session.ts';

export interface TunnelEndpointDeps {
  verifier: AgentTokenVerifier;
  dispatcher: Dispatcher;
  logger: Logger;
  heartbeatMs: number;
  window: number;
  ackTimeoutMs: number;
  agent: (id: string) => AgentRecord | undefined;
  channel: (id: string) => ChannelRecord | undefined;
  onConnect: (agentId: string, version: string) => void;
  onDisconnect: (agentId: string) => void;
}

function reject(socket: Duplex, status: 401 | 404, text: string): void {
  const code = status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_NOT_FOUND';
  const body = JSON.stringify({ error: { code, message: text } });
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Not Found'}\r\n` +
      'Connection: close\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.destroy();
}

export class TunnelEndpoint {
  readonly #deps: TunnelEndpointDeps;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Map<string, Set<TunnelSession>>();
  #accepting = true;

  constructor(deps: TunnelEndpointDeps) {
    this.#deps = deps;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_AGENT_FRAME_BYTES,
      perMessageDeflate: false,
      clientTracking: false,
    });
  }

  listen(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      void this.#upgrade(req, socket, head);
    });
  }

  /** Whether the agent has a session that completed its handshake and is still open. */
  isConnected(agentId: string): boolean {
    for (const s of this.#sessions.get(agentId) ?? []) if (s.open) return true;
    return false;
  }

  /** Deliveries sent to the agent's open sessions and not yet acknowledged. */
  inFlight(agentId: string): number {
    let n = 0;
    for (const s of this.#sessions.get(agentId) ?? []) n += this.#deps.dispatcher.inFlightCount(s);
    return n;
  }

  /** The agents with a session that completed its handshake and is still open. */
  connectedAgents(): string[] {
    return [...this.#sessions.keys()].filter((agentId) => this.isConnected(agentId));
  }

  connectedCount(): number {
    let n = 0;
    for (const agentId of this.#sessions.keys()) if (this.isConnected(agentId)) n++;
    return n;
  }

  /** Closes every live session of an agent (revocation). */
  closeAgent(agentId: string, code: number, reason: string): void {
    for (const session of this.#sessions.get(agentId) ?? []) session.close(code, reason);
  }

  /** Sends `goaway` to every agent and stops taking new ones. */
  goAway(reconnectAfterMs: number): void {
    this.#accepting = false;
    for (const set of this.#sessions.values()) for (const s of set) s.goAway(reconnectAfterMs);
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/tunnel' || !this.#accepting) {
      reject(socket, 404, 'not found');
      return;
    }
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer (\S+)$/.exec(auth)?.[1];
    let agentId: string;
    try {
      if (!token) throw new Error('missing bearer token');
      agentId = await this.#deps.verifier.verify(token);
    } catch (err) {
      const reason = isPosternError(err) ? err.message : 'missing bearer token';
      this.#deps.logger.warn(
        { remote: req.socket.remoteAddress, reason },
        'tunnel upgrade refused',
      );
      reject(socket, 401, reason);
      return;
    }
    const agent = this.#deps.agent(agentId);
    if (!agent || socket.destroyed) {
      reject(socket, 401, 'unknown agent');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const channels: ChannelRef[] = agent.channels
        .map((id) => this.#deps.channel(id))
        .filter((c): c is ChannelRecord => c !== undefined)
        .map((c) => ({ id: c.id, name: c.name }));
      const session: TunnelSession = new TunnelSession(ws, socket as Socket, {
        id: randomId('ses'),
        agentId,
        channels,
        heartbeatMs: this.#deps.heartbeatMs,
        window: this.#deps.window,
        ackTimeoutMs: this.#deps.ackTimeoutMs,
        dispatcher: this.#deps.dispatcher,
        logger: this.#deps.logger,
        onHello: (s, version) => {
          // Revoked (or re-paired) between the upgrade and its hello.
          if (!this.#deps.agent(agentId)) return false;
          // A fresh connection from the same agent replaces an older one that may be half-open.
          for (const old of this.#sessions.get(agentId) ?? []) {
            if (old !== s) old.close(CloseCode.goingAway, 'replaced by a newer session');
          }
          this.#deps.logger.info({ agentId, sessionId: s.id, version }, 'agent connected');
          this.#deps.onConnect(agentId, version);
          return true;
        },
        onClose: (s) => {
          const set = this.#sessions.get(agentId);
          set?.delete(s);
          if (set?.size === 0) this.#sessions.delete(agentId);
          // Only a session that said hello was ever connected.
          if (s.greeted && !this.isConnected(agentId)) this.#deps.onDisconnect(agentId);
        },
      });
      let set = this.#sessions.get(agentId);
      if (!set) this.#sessions.set(agentId, (set = new Set()));
      set.add(session);
    });
  }
}
