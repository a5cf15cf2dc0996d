/**
 * The relay, assembled: store, dispatch, tunnel endpoint and HTTP surface. `createRelay` has
 * no side effects; `start()` opens the store and listens, `stop()` shuts down gracefully.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { AddressInfo, Socket } from 'node:net';
import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';
import { fullJitterBackoff } from '../shared/backoff.ts';
import { CloseCode } from '../shared/protocol.ts';
import { ConfigError, isPosternError, PosternError } from '../shared/errors.ts';
import { setUpAdminToken } from './admin-token.ts';
import { ControlCache } from './control-cache.ts';
import { reactToControlChange } from './control-changes.ts';
import type { RelayConfig } from './config.ts';
import { dashboardRouter } from './dashboard/router.ts';
import { Dispatcher } from './dispatch/dispatcher.ts';
import { adminAuth, apiRouter } from './http/api.ts';
import { NOT_FOUND_BODY, isCanonicalTarget, refuseTarget } from './http/canonical-path.ts';
import { ConnectionLimits } from './http/connection-limits.ts';
import type { RelayContext } from './http/context.ts';
import { errorMiddleware } from './http/errors.ts';
import { INGRESS_PREFIX, ingressHandler } from './http/ingress.ts';
import { startingHandler, STORE_UNAVAILABLE_BODY } from './http/starting.ts';
import { eventIdGenerator } from './ids.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { PresenceBoard } from './presence.ts';
import { EmbeddedStore } from './store/embedded.ts';
import { PostgresStore } from './store/postgres/store.ts';
import { redactUrl } from './store/postgres/url.ts';
import type { ChannelRecord, Store } from './store/types.ts';
import { AgentTokenVerifier } from './tunnel/auth.ts';
import { TunnelEndpoint } from './tunnel/endpoint.ts';

/** How long a kept-alive connection may sit idle between requests. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** Waits between attempts to open a store that is unavailable at start (full jitter). */
const OPEN_RETRY = { baseMs: 250, capMs: 5_000 };

export interface RelayDeps {
  logger: Logger;
  /**
   * Defaults to the PostgreSQL store when `config.databaseUrl` is set, else the embedded store
   * under `config.dataDir`.
   */
  store?: Store;
  now?: () => number;
}

export interface Relay {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The address actually listened on (after `start`), e.g. http://127.0.0.1:8080. */
  readonly url: string;
  /** The URL providers and agents use (after `start`). */
  readonly publicUrl: string;
  /** Set when this start generated the admin token file. */
  readonly adminTokenFile: string | null;
}

/** One route of the relay's own HTTP app, as its routers hold it. */
interface RouteEntry {
  method: string;
  path: string;
}

/** Every method and path the routers answer (HEAD, added by the router for each GET, left out). */
function routeTable(routers: Router[]): RouteEntry[] {
  return routers.flatMap((r) =>
    r.stack.flatMap((layer) =>
      layer.methods
        .filter((method) => method !== 'HEAD')
        .map((method) => ({ method, path: String(layer.path) })),
    ),
  );
}

function buildApp(ctx: RelayContext, metrics: Metrics): { app: Koa; routes: RouteEntry[] } {
  const app = new Koa({ proxy: false });
  app.silent = true;
  // Exact, case-sensitive paths: `/HEALTHZ`, `/metrics/` and the like are not routes.
  const router = new Router({ sensitive: true, strict: true });
  router.get('/healthz', (c) => {
    c.body = { status: 'ok' };
  });
  router.get('/readyz', async (c) => {
    c.set('cache-control', 'no-store');
    if (!ctx.accepting()) {
      c.status = 503;
      c.body = { status: 'not ready' };
      return;
    }
    if ((await ctx.store.health()) === 'unavailable') {
      c.status = 503;
      c.type = 'application/json; charset=utf-8';
      c.body = STORE_UNAVAILABLE_BODY;
      return;
    }
    c.status = 200;
    c.body = { status: 'ready' };
  });
  router.get('/metrics', async (c) => {
    // adminAuth already refused a request without the token; checked here too, in case.
    if (!ctx.admin.accepts(c.get('authorization'))) {
      c.status = 401;
      c.body = { error: { code: 'ERR_UNAUTHORIZED', message: 'admin token missing or wrong' } };
      return;
    }
    for (const [status, n] of Object.entries(await ctx.store.countByStatus())) {
      metrics.events.set({ status }, n);
    }
    c.type = metrics.registry.contentType;
    c.body = await metrics.registry.metrics();
  });
  const api = apiRouter(ctx);
  const dashboard = dashboardRouter(ctx.logger);
  app.use(errorMiddleware(ctx.logger));
  // No route: the same JSON answer as a target the gate refused.
  app.use(async (c, next) => {
    await next();
    if (c.status === 404 && c.body == null) {
      c.status = 404; // explicit, or koa turns it into 200 once a body is set
      c.type = 'application/json; charset=utf-8';
      c.body = NOT_FOUND_BODY;
    }
  });
  app.use(adminAuth(ctx));
  // No allowedMethods(): a method a path does not have is a 404 like any other miss, so that
  // no answer (405, OPTIONS' Allow) tells which paths exist.
  for (const r of [router, api, dashboard]) app.use(r.routes());
  return { app, routes: routeTable([router, api, dashboard]) };
}

/** Why the relay could not listen, in words that say what to do. */
function listenError(err: unknown, host: string, port: number): Error {
  const code = (err as { code?: string }).code;
  if (code === 'EADDRINUSE') {
    return new ConfigError(
      `port ${port} on ${host} is in use by another process: stop it, or choose another --port`,
    );
  }
  if (code === 'EACCES') {
    return new ConfigError(
      `not allowed to listen on port ${port} on ${host}: ports below 1024 need privileges; choose another --port`,
    );
  }
  if (code === 'EADDRNOTAVAIL') {
    return new ConfigError(`${host} is not an address of this host: check --host`);
  }
  return err as Error;
}

/** The store the config names: PostgreSQL with a database URL, else the embedded one. */
function defaultStore(config: RelayConfig, logger: Logger): Store {
  const atRest = {
    dataDir: config.dataDir,
    secretsKey: config.secretsKey,
    forgetLostSecrets: config.forgetLostSecrets,
    logger,
  };
  return config.databaseUrl === null
    ? new EmbeddedStore(atRest)
    : new PostgresStore({ url: config.databaseUrl, poolSize: config.databasePoolSize, ...atRest });
}

/** An open that may succeed later by itself (the database is away), not a wrong setting. */
function isUnavailable(err: unknown): boolean {
  return isPosternError(err) && err.code === 'ERR_UNAVAILABLE';
}

export function createRelay(config: RelayConfig, deps: RelayDeps): Relay {
  const logger = deps.logger;
  const now = deps.now ?? Date.now;
  const store = deps.store ?? defaultStore(config, logger);
  const storeName = config.databaseUrl === null ? config.dataDir : redactUrl(config.databaseUrl);
  const control = new ControlCache(
    store,
    (err) =>
      logger.error({ err }, 'could not read the control state again; will on the next change'),
    // Made through this relay or another: the tunnels and dispatch here follow it.
    (before, after) =>
      reactToControlChange(before, after, {
        closeAgent: (agentId, why, reason) =>
          tunnel?.closeAgent(
            agentId,
            why === 'revoked' ? CloseCode.revoked : CloseCode.goingAway,
            reason,
          ),
        channelChanged: (channelId) => dispatcher?.channelChanged(channelId),
        channelRemoved: (channelId) => dispatcher?.forgetChannel(channelId),
      }),
  );
  let unsubscribeControl: () => void = () => undefined;
  let server: Server | null = null;
  /**
   * Every socket the server accepted, upgraded ones (tunnels) included: closeAllConnections
   * knows only HTTP ones, so at the end of the grace period these are destroyed too, and a
   * tunnel or a handshake left half-closed cannot hold the shutdown for ever.
   */
  const sockets = new Set<Socket>();
  let tunnel: TunnelEndpoint | null = null;
  let dispatcher: Dispatcher | null = null;
  let presence: PresenceBoard | null = null;
  let accepting = false;
  /** Set by `stop()` while `start()` waits for the store: the wait ends, start fails. */
  const starting = new AbortController();
  let started: Promise<void> | null = null;
  /** The store is open and every handler attached. */
  let serving = false;
  let retentionTimer: NodeJS.Timeout | null = null;
  let sweeping: Promise<void> | null = null;

  /** Retention: forget finished events past their age and reclaim their disk. */
  const sweep = () => {
    sweeping ??= store
      .removeFinishedBefore(now() - config.retentionMs)
      .then((removed) => {
        if (removed > 0) logger.info({ removed }, 'retention: removed finished events');
      })
      .catch((err: unknown) => logger.error({ err }, 'retention sweep failed; will try again'))
      .finally(() => {
        sweeping = null;
      });
  };

  const channel = (idOrName: string, byName = false): ChannelRecord | undefined =>
    control.state.channels.find((c) => c.id === idOrName || (byName && c.name === idOrName));
  const agent = (id: string) => control.state.agents.find((a) => a.id === id);

  const recordAgent = (agentId: string, change: { version?: string }) => {
    control
      .update((s) => {
        const a = s.agents.find((x) => x.id === agentId);
        if (a) Object.assign(a, change, { lastSeenAt: now() });
      })
      .catch((err: unknown) => logger.error({ err, agentId }, 'could not record agent state'));
  };

  /** Waits `ms`, or fails at once when `stop()` is called meanwhile. */
  const pause = async (ms: number) => {
    try {
      await delay(ms, undefined, { signal: starting.signal });
    } catch {
      throw stoppedWhileStarting();
    }
  };
  const stoppedWhileStarting = () =>
    new PosternError('ERR_SHUTTING_DOWN', 'stopped before the store could be opened');

  /**
   * Opens the store and reads the control state. A store that is unavailable (the database
   * cannot be reached) is tried again, with a log line each time, until it opens or `stop()`
   * is called: the relay recovers by itself. Any other error (a wrong setting) is thrown.
   */
  const openStore = async () => {
    for (let attempt = 1; ; attempt++) {
      let opened = false;
      try {
        await store.open();
        opened = true;
        await control.load();
        return await setUpAdminToken(control, config.dataDir, config.adminToken);
      } catch (err) {
        if (opened) await store.close().catch(() => undefined);
        if (starting.signal.aborted) throw stoppedWhileStarting();
        if (!isUnavailable(err)) throw err;
        const retryInMs = fullJitterBackoff(attempt, OPEN_RETRY);
        logger.warn(
          { store: storeName, attempt, retryInMs, err: (err as Error).message },
          'store unavailable; trying again',
        );
        await pause(retryInMs);
      }
    }
  };

  const closeServer = async () => {
    const s = server;
    server = null;
    if (!s) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeAllConnections();
    await closed;
  };

  /** Listens first (so /healthz answers while the store is awaited), then opens the store. */
  const run = async () => {
    server = createServer({
      // Explicit limits: a slow or stuck client cannot hold a connection for ever. A head
      // that never starts is ConnectionLimits' job; Node checks started ones every second.
      headersTimeout: config.headerTimeoutMs,
      requestTimeout: 120_000,
      connectionsCheckingInterval: 1_000,
      // Above the idle timeout of the proxies and load balancers in front (nginx and AWS ALB:
      // 60 s), so that the relay never closes a kept-alive connection as they reuse it.
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      maxHeaderSize: 16 * 1024,
    });
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(config.port, config.host, () => {
          server!.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server = null;
      throw listenError(err, config.host, config.port);
    }
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const publicUrl = config.publicUrl ?? `http://localhost:${address.port}`;
    const metrics = createMetrics();
    const limits = new ConnectionLimits({
      headTimeoutMs: config.headerTimeoutMs,
      maxPerAddress: config.maxConnectionsPerAddress,
      trustProxy: config.trustProxy,
      logger,
      metrics,
      now,
    });
    limits.attach(server);
    const whileStarting = (req: IncomingMessage, res: ServerResponse) => {
      if (limits.admit(req, res)) startingHandler(req, res);
    };
    server.on('request', whileStarting);
    logger.info(
      { url: `http://${host}:${address.port}`, store: storeName },
      'listening; opening the store',
    );
    let admin: Awaited<ReturnType<typeof setUpAdminToken>>;
    try {
      admin = await openStore();
    } catch (err) {
      await closeServer();
      throw err;
    }
    unsubscribeControl = store.subscribe(
      (change) => {
        if (change.type === 'control') control.changed();
      },
      { events: false },
    );
    // Nothing else is served until the handlers below are attached, in this same tick.
    server.off('request', whileStarting);
    dispatcher = new Dispatcher({
      store,
      logger,
      channel,
      now,
      leaseMs: config.leaseMs,
      onAttempt: (outcome, deliveredAfterMs) => {
        metrics.attempts.inc({ outcome });
        if (deliveredAfterMs !== null) metrics.deliveryLatency.observe(deliveredAfterMs / 1000);
      },
    });
    tunnel = new TunnelEndpoint({
      verifier: new AgentTokenVerifier({
        audience: publicUrl,
        agent,
        now,
        used: () => control.state.usedTokenIds,
        // Checked and recorded in one control update: updates are serialized across relays,
        // so of two relays given the same token, exactly one accepts it.
        recordUsed: (entry, nowS, keyX) =>
          control.update((s) => {
            const refuse = (reason: string) => {
              throw new PosternError('ERR_UNAUTHORIZED', reason, { status: 401 });
            };
            if (s.usedTokenIds.some((u) => u.key === entry.key)) {
              refuse('token replayed (jti already used)');
            }
            const agentId = entry.key.slice(0, entry.key.indexOf(':'));
            if (s.agents.find((a) => a.id === agentId)?.publicKey?.x !== keyX) {
              refuse('unknown or unpaired agent');
            }
            s.usedTokenIds = s.usedTokenIds.filter((u) => u.until >= nowS);
            s.usedTokenIds.push(entry);
          }),
      }),
      dispatcher,
      logger,
      heartbeatMs: config.heartbeatMs,
      window: config.window,
      ackTimeoutMs: config.ackTimeoutMs,
      agent,
      channel,
      onConnect: (agentId, version) => {
        metrics.tunnelConnections.inc();
        metrics.agentsConnected.set(tunnel!.connectedCount());
        presence?.changed();
        recordAgent(agentId, { version });
      },
      onDisconnect: (agentId) => {
        metrics.agentsConnected.set(tunnel!.connectedCount());
        presence?.changed();
        if (accepting) recordAgent(agentId, {});
      },
    });
    const board = new PresenceBoard({
      store,
      logger,
      now,
      local: () => tunnel?.connectedAgents() ?? [],
    });
    presence = board;
    const ctx: RelayContext = {
      config: { ...config, publicUrl },
      store,
      control,
      dispatcher,
      tunnel,
      admin,
      metrics,
      logger,
      now,
      nextEventId: eventIdGenerator(now),
      accepting: () => accepting,
      servedElsewhere: (channelId) =>
        control.state.agents.some((a) => a.channels.includes(channelId) && board.elsewhere(a.id)),
      connectedElsewhere: (agentId) => board.elsewhere(agentId),
      channel,
    };
    const { app, routes } = buildApp(ctx, metrics);
    const handle = app.callback();
    const ingress = ingressHandler(ctx);
    server.on('request', (req, res) => {
      if (!limits.admit(req, res)) return;
      const target = req.url ?? '';
      if (target.startsWith(INGRESS_PREFIX)) ingress(req, res);
      else if (!isCanonicalTarget(target)) refuseTarget(res);
      else void handle(req, res);
    });
    logger.debug({ routes }, 'http routes');
    tunnel.listen(server);
    dispatcher.start();
    board.start();
    sweep();
    retentionTimer = setInterval(
      sweep,
      Math.max(1_000, Math.min(60_000, Math.floor(config.retentionMs / 4))),
    );
    retentionTimer.unref();
    accepting = true;
    serving = true;
    Object.assign(relay, {
      url: `http://${host}:${address.port}`,
      publicUrl,
      adminTokenFile: admin.writtenTo,
    });
    logger.info(
      {
        url: relay.url,
        publicUrl,
        dataDir: config.dataDir,
        store: storeName,
        pending: await store.countByStatus().then(
          (counts) => counts.queued,
          () => null,
        ),
      },
      'relay listening',
    );
  };

  const relay: Relay = {
    url: '',
    publicUrl: '',
    adminTokenFile: null,
    start() {
      started ??= run();
      return started;
    },
    async stop() {
      if (started && !serving) {
        // Still starting: a wait for the store ends (start() closes the server and fails);
        // past it, start() finishes and the relay is stopped as any other below.
        starting.abort();
        await started.catch(() => undefined);
      }
      if (!server || !serving) return;
      accepting = false;
      logger.info('shutting down: refusing new webhooks, telling agents to reconnect later');
      tunnel?.goAway(1_000);
      const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => {
        server?.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      }, config.shutdownGraceMs);
      await closed;
      clearTimeout(grace);
      dispatcher?.stop();
      await presence?.stop();
      unsubscribeControl();
      if (retentionTimer) clearInterval(retentionTimer);
      await sweeping;
      await store.close();
      server = null;
      serving = false;
      logger.info('relay stopped');
    },
  };
  return relay;
}
