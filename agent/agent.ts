/**
 * The agent, assembled: tunnel client, route table and deliverer. Makes one attempt per
 * `deliver` and reports it; suppresses a second delivery of an event it already delivered
 * (its ack was lost on the way back) and joins a redelivery of one still in progress.
 */
import type { Logger } from 'pino';
import type { AgentFrame, ChannelRef, RelayFrame } from '../shared/protocol.ts';
import { VERSION } from '../shared/version.ts';
import type { AgentConfig, Route } from './config.ts';
import { selectRoutes, Semaphore } from './routing.ts';
import { Deliverer, type AckFrame } from './deliver.ts';
import type { Identity } from './identity.ts';
import { mintToken } from './token.ts';
import { TunnelClient } from './tunnel.ts';

type Deliver = Extract<RelayFrame, { type: 'deliver' }>;

/**
 * `eventId/replay` keys remembered as delivered, to answer redeliveries (an ack lost on the
 * way back) without a second request; an operator's replay has a new key and goes out again.
 */
const DELIVERED_MEMORY = 100_000;

/** After a reload that routes a new channel, how long in-flight acks may delay the reconnect. */
const RECONNECT_WAIT_MS = 5_000;

export interface AgentDeps {
  logger: Logger;
  now?: () => number;
}

export interface PosternAgent {
  start(): void;
  /**
   * Swaps in a new config (SIGHUP): new deliveries use its routes; those in flight finish on
   * the routes they started with. Returns the channels that gained a route.
   */
  reload(next: AgentConfig): string[];
  stop(graceMs?: number): Promise<void>;
  readonly connected: boolean;
}

export function tunnelUrl(relayUrl: string): string {
  const url = new URL('/tunnel', relayUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export function createAgent(
  initial: AgentConfig,
  identity: Identity,
  deps: AgentDeps,
): PosternAgent {
  const log = deps.logger;
  const now = deps.now ?? Date.now;
  const deliverer = new Deliverer();
  const delivered = new Set<string>();
  const running = new Map<string, Promise<AckFrame>>();
  let stopping = false;
  let config = initial;
  /** The channels the relay granted in its last `welcome`; null before the first one. */
  let granted: ChannelRef[] | null = null;

  /** Per-route concurrency limits; a reload keeps the semaphore of a route left unchanged. */
  const limitsFor = (routes: readonly Route[], old?: ReadonlyMap<string, Semaphore>) =>
    new Map(
      routes
        .filter((r) => r.concurrency !== null)
        .map((r) => {
          const kept = old?.get(r.name);
          return [r.name, kept?.limit === r.concurrency ? kept : new Semaphore(r.concurrency!)];
        }),
    );
  let limits = limitsFor(config.routes);

  function checkRoutes(granted: ChannelRef[]): void {
    for (const route of config.routes) {
      if (!granted.some((c) => c.id === route.channel || c.name === route.channel)) {
        log.warn(
          { channel: route.channel },
          `${config.source}: a route names channel "${route.channel}", which this agent is not granted`,
        );
      }
    }
    for (const c of granted) {
      if (!config.routes.some((r) => r.channel === c.id || r.channel === c.name)) {
        log.warn(
          { channelId: c.id },
          `channel "${c.name}" has no route in ${config.source}: its events stay queued on the relay` +
            (config.file === null ? '' : ` (add one to ${config.file} and send SIGHUP)`),
        );
      }
    }
  }

  /** One request to one route, within the route's concurrency limit. */
  function send(route: Route, frame: Deliver): Promise<AckFrame> {
    const limit = route.concurrency === null ? null : limits.get(route.name);
    return limit
      ? limit.run(() => deliverer.deliver(route, frame, now))
      : deliverer.deliver(route, frame, now);
  }

  async function attempt(frame: Deliver): Promise<AckFrame> {
    const selection = selectRoutes(config, frame);
    const base = { type: 'ack' as const, eventId: frame.eventId, durationMs: 0 };
    if (selection.kind === 'no_route') {
      return { ...base, outcome: 'no_route', error: `no route for channel "${frame.channelName}"` };
    }
    if (selection.kind === 'filtered') return { ...base, outcome: 'filtered' };
    const started = performance.now();
    const acks = await Promise.all(selection.routes.map((route) => send(route, frame)));
    const fields = { eventId: frame.eventId, channelId: frame.channelId, attempt: frame.attempt };
    const failed: string[] = [];
    selection.routes.forEach((route, i) => {
      const ack = acks[i]!;
      if (ack.outcome === 'delivered') return;
      failed.push(route.name);
      log.warn(
        { ...fields, route: route.name, target: route.target.origin, status: ack.status },
        `delivery to ${route.target.origin} (route ${route.name}) failed: ${ack.error ?? 'unknown error'}`,
      );
    });
    const deliveredTo = selection.routes.filter((r) => !failed.includes(r.name)).map((r) => r.name);
    // The first route answers for the event: its status (and, on sync channels, its response).
    const first = acks[0] ?? { ...base, outcome: 'delivered' as const };
    const ack: AckFrame = {
      ...first,
      durationMs: Math.round(performance.now() - started),
      outcome: failed.length === 0 ? 'delivered' : 'failed',
    };
    if (deliveredTo.length > 0) ack.routes = deliveredTo;
    if (failed.length > 0 && selection.routes.length > 1) {
      const failures = acks.filter((a) => a.outcome !== 'delivered');
      ack.error = `routes ${failed.join(', ')} failed: ${failures[0]?.error ?? 'unknown error'}`;
      if (ack.status === undefined && failures[0]?.status !== undefined)
        ack.status = failures[0].status;
      const waits = failures.map((a) => a.retryAfterMs).filter((w): w is number => w !== undefined);
      if (waits.length > 0) ack.retryAfterMs = Math.max(...waits);
    }
    if (ack.outcome === 'delivered') {
      delivered.add(`${frame.eventId}/${frame.replay}`);
      if (delivered.size > DELIVERED_MEMORY) delivered.delete(delivered.values().next().value!);
      log.debug({ ...fields, routes: deliveredTo }, 'delivered');
    }
    return ack;
  }

  function onDeliver(frame: Deliver, reply: (ack: AgentFrame) => void): void {
    // While stopping, start nothing new: unacknowledged, the event is offered again later.
    if (stopping) return;
    const key = `${frame.eventId}/${frame.replay}`;
    if (delivered.has(key)) {
      reply({ type: 'ack', eventId: frame.eventId, outcome: 'delivered', durationMs: 0 });
      return;
    }
    let pending = running.get(key);
    if (!pending) {
      pending = attempt(frame).finally(() => running.delete(key));
      running.set(key, pending);
    }
    void pending.then(reply);
  }

  const tunnel = new TunnelClient({
    url: tunnelUrl(identity.relayUrl),
    token: () => mintToken(identity, now()),
    agentVersion: VERSION,
    logger: log,
    onWelcome: (w) => {
      granted = w.channels;
      checkRoutes(w.channels);
    },
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
    reload(next) {
      const routed = (c: AgentConfig) => new Set(c.routes.map((r) => r.channel));
      const before = routed(config);
      const gained = [...routed(next)].filter((ch) => !before.has(ch));
      config = next;
      limits = limitsFor(next.routes, limits);
      log.info(
        { routes: next.routes.length, gained, inFlight: running.size },
        `reloaded ${next.source}: ${next.routes.length} route(s)`,
      );
      if (granted) {
        checkRoutes(granted);
        // The relay parks events of a channel the agent had no route for and offers them again
        // when an agent connects; the protocol has no frame to announce routes, so a channel
        // granted and newly routed makes the agent reconnect, once its deliveries in flight
        // (at most RECONNECT_WAIT_MS) are acknowledged.
        const now = granted;
        if (gained.some((ch) => now.some((c) => c.id === ch || c.name === ch))) {
          let timer: NodeJS.Timeout | undefined;
          void Promise.race([
            Promise.allSettled([...running.values()]),
            new Promise((resolve) => (timer = setTimeout(resolve, RECONNECT_WAIT_MS))),
          ]).then(() => {
            clearTimeout(timer);
            if (!stopping) tunnel.reconnect('routes changed');
          });
        }
      }
      return gained;
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
