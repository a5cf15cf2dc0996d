/**
 * The agent, assembled: tunnel client, route table and deliverer. Makes one attempt per
 * `deliver` and reports it; suppresses a second delivery of an event it already delivered
 * (its ack was lost on the way back) and joins a redelivery of one still in progress.
 */
import type { Logger } from 'pino';
import type { AgentFrame, ChannelRef, RelayFrame } from '../shared/protocol.ts';
import { VERSION } from '../shared/version.ts';
import type { AgentConfig, Route } from './config.ts';
import { Deliverer, type AckFrame } from './deliver.ts';
import type { Identity } from './identity.ts';
import { mintToken } from './token.ts';
import { TunnelClient } from './tunnel.ts';

type Deliver = Extract<RelayFrame, { type: 'deliver' }>;

/** Event ids remembered as delivered, to answer redeliveries without a second request. */
const DELIVERED_MEMORY = 100_000;

export interface AgentDeps {
  logger: Logger;
  now?: () => number;
}

export interface PosternAgent {
  start(): void;
  stop(graceMs?: number): Promise<void>;
  readonly connected: boolean;
}

export function tunnelUrl(relayUrl: string): string {
  const url = new URL('/tunnel', relayUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export function createAgent(
  config: AgentConfig,
  identity: Identity,
  deps: AgentDeps,
): PosternAgent {
  const log = deps.logger;
  const now = deps.now ?? Date.now;
  const deliverer = new Deliverer();
  const delivered = new Set<string>();
  const running = new Map<string, Promise<AckFrame>>();
  let stopping = false;

  const findRoute = (frame: Deliver): Route | undefined =>
    config.routes.find((r) => r.channel === frame.channelId) ??
    config.routes.find((r) => r.channel === frame.channelName);

  function checkRoutes(granted: ChannelRef[]): void {
    for (const route of config.routes) {
      if (!granted.some((c) => c.id === route.channel || c.name === route.channel)) {
        log.warn(
          { channel: route.channel },
          `${config.file}: a route names channel "${route.channel}", which this agent is not granted`,
        );
      }
    }
    for (const c of granted) {
      if (!config.routes.some((r) => r.channel === c.id || r.channel === c.name)) {
        log.warn(
          { channelId: c.id },
          `channel "${c.name}" has no route in ${config.file}: its events stay queued on the relay`,
        );
      }
    }
  }

  async function attempt(frame: Deliver): Promise<AckFrame> {
    const route = findRoute(frame);
    if (!route) {
      return {
        type: 'ack',
        eventId: frame.eventId,
        outcome: 'no_route',
        durationMs: 0,
        error: `no route for channel "${frame.channelName}"`,
      };
    }
    const ack = await deliverer.deliver(route, frame, now);
    const fields = {
      eventId: frame.eventId,
      channelId: frame.channelId,
      attempt: frame.attempt,
      status: ack.status,
      durationMs: ack.durationMs,
    };
    if (ack.outcome === 'delivered') {
      delivered.add(frame.eventId);
      if (delivered.size > DELIVERED_MEMORY) delivered.delete(delivered.values().next().value!);
      log.debug(fields, 'delivered');
    } else {
      log.warn(
        { ...fields, target: route.target.origin },
        `delivery to ${route.target.origin} failed: ${ack.error ?? 'unknown error'}`,
      );
    }
    return ack;
  }

  function onDeliver(frame: Deliver, reply: (ack: AgentFrame) => void): void {
    // While stopping, start nothing new: unacknowledged, the event is offered again later.
    if (stopping) return;
    if (delivered.has(frame.eventId)) {
      reply({ type: 'ack', eventId: frame.eventId, outcome: 'delivered', durationMs: 0 });
      return;
    }
    let pending = running.get(frame.eventId);
    if (!pending) {
      pending = attempt(frame).finally(() => running.delete(frame.eventId));
      running.set(frame.eventId, pending);
    }
    void pending.then(reply);
  }

  const tunnel = new TunnelClient({
    url: tunnelUrl(identity.relayUrl),
    token: () => mintToken(identity, now()),
    agentVersion: VERSION,
    logger: log,
    onWelcome: (w) => checkRoutes(w.channels),
    onDeliver,
  });

  return {
    start() {
      log.info(
        { agentId: identity.agentId, relay: identity.relayUrl, routes: config.routes.length },
        'agent starting',
      );
      tunnel.start();
    },
    /** Finishes deliveries in progress and sends their acks (up to `graceMs`), then leaves. */
    async stop(graceMs = 10_000) {
      stopping = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(running.values()),
        new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
      await tunnel.stop();
      await deliverer.close();
    },
    get connected() {
      return tunnel.connected;
    },
  };
}
