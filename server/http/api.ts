/** The admin API under `/api` (admin token required), plus `POST /api/pair` (code required). */
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { PosternError } from '../../shared/errors.ts';
import { readEnum, readInt, readString, type Fail } from '../../shared/fields.ts';
import { CloseCode } from '../../shared/protocol.ts';
import { applyChannelPatch, channelView, parseNewChannel } from '../channels.ts';
import { randomId } from '../ids.ts';
import { findPairing, hashPairingCode, newPairingCode, parsePublicKey } from '../pairing.ts';
import { RateLimiter } from '../rate-limit.ts';
import { STATUSES } from '../store/records.ts';
import type { AgentRecord, EventSummary } from '../store/types.ts';
import { readJsonObject } from './body.ts';
import { clientAddress } from './client-address.ts';
import { streamHandler } from './stream.ts';
import type { RelayContext } from './context.ts';

const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_BAD_REQUEST', `${field}: expected ${expected}`, { status: 400 });
};

function notFound(what: string): never {
  throw new PosternError('ERR_NOT_FOUND', `no such ${what}`, { status: 404 });
}

const iso = (ms: number | null) => (ms === null || ms === 0 ? null : new Date(ms).toISOString());

export function eventView(e: EventSummary): Record<string, unknown> {
  return {
    id: e.id,
    channelId: e.channelId,
    status: e.status,
    receivedAt: iso(e.receivedAt),
    method: e.method,
    path: e.path,
    query: e.query,
    size: e.size,
    attemptCount: e.attemptCount,
    nextAttemptAt: e.status === 'queued' ? iso(e.nextAttemptAt) : null,
    ...(e.status === 'rejected' ? { reason: e.reason } : {}),
    ...(e.orderKey ? { orderKey: e.orderKey } : {}),
    ...(e.deliveredRoutes.length > 0 ? { deliveredRoutes: e.deliveredRoutes } : {}),
    attempts: e.attempts.map((a) => ({ ...a, at: iso(a.at) })),
  };
}

export function apiRouter(relay: RelayContext): Router {
  const router = new Router({ prefix: '/api' });
  // Pairing codes are 60 bits and live 15 minutes: at 10 guesses a minute per address, even a
  // million addresses would need ~10^8 years. No global limit, so nobody can lock pairing out.
  const pairPerClient = new RateLimiter({ perSecond: 1 / 6, burst: 10, now: relay.now });

  router.post('/pair', async (ctx) => {
    const wait = pairPerClient.take(clientAddress(ctx.req, relay.config.trustProxy));
    if (wait > 0) {
      ctx.set('Retry-After', String(Math.ceil(wait / 1000)));
      throw new PosternError('ERR_RATE_LIMITED', 'too many pairing attempts; wait and retry', {
        status: 429,
      });
    }
    const raw = await readJsonObject(ctx.req);
    const code = readString(raw, 'code', fail, { min: 1, max: 64 });
    const publicKey = parsePublicKey(raw['publicKey']);
    const now = relay.now();
    const pairing = findPairing(relay.store.control().pairings, code, now);
    if (!pairing) {
      relay.logger.warn(
        { remote: ctx.req.socket.remoteAddress },
        'pairing refused: unknown, used or expired code',
      );
      throw new PosternError('ERR_PAIRING_CODE', 'pairing code is unknown, used or expired', {
        status: 401,
      });
    }
    let agent: AgentRecord | undefined;
    await relay.store.updateControl((s) => {
      s.pairings = s.pairings.filter((p) => p.codeHash !== pairing.codeHash && p.expiresAt > now);
      agent = s.agents.find((a) => a.id === pairing.agentId);
      if (agent) {
        agent.publicKey = publicKey;
        agent.pairedAt = now;
      }
    });
    if (!agent) notFound('agent');
    // A re-paired agent's old key is dead: close anything still using it.
    relay.tunnel.closeAgent(agent.id, CloseCode.revoked, 'agent re-paired');
    relay.logger.info({ agentId: agent.id }, 'agent paired');
    ctx.body = {
      agentId: agent.id,
      name: agent.name,
      relayUrl: relay.config.publicUrl,
      channels: agent.channels
        .map((id) => relay.channel(id))
        .filter((c) => c !== undefined)
        .map((c) => ({ id: c.id, name: c.name })),
    };
  });

  router.use(async (ctx: Context, next: Next) => {
    if (!relay.admin.accepts(ctx.get('authorization'))) {
      throw new PosternError('ERR_UNAUTHORIZED', 'admin token missing or wrong', { status: 401 });
    }
    await next();
  });

  // ---- channels
  router.post('/channels', async (ctx) => {
    const raw = await readJsonObject(ctx.req);
    const channel = parseNewChannel(raw, randomId('ch'), relay.now());
    await relay.store.updateControl((s) => {
      if (s.channels.some((c) => c.name === channel.name)) {
        throw new PosternError('ERR_BAD_REQUEST', `a channel named "${channel.name}" exists`, {
          status: 409,
        });
      }
      s.channels.push(channel);
    });
    relay.logger.info({ channelId: channel.id, name: channel.name }, 'channel created');
    ctx.status = 201;
    ctx.body = channelView(channel, relay.config.publicUrl);
  });

  router.get('/channels', (ctx) => {
    ctx.body = {
      channels: relay.store.control().channels.map((c) => channelView(c, relay.config.publicUrl)),
    };
  });

  router.get('/channels/:id', (ctx) => {
    const channel = relay.channel(ctx.params['id']!, true) ?? notFound('channel');
    ctx.body = channelView(channel, relay.config.publicUrl);
  });

  router.patch('/channels/:id', async (ctx) => {
    const id = (relay.channel(ctx.params['id']!, true) ?? notFound('channel')).id;
    const raw = await readJsonObject(ctx.req);
    let view: Record<string, unknown> = {};
    await relay.store.updateControl((s) => {
      const channel = s.channels.find((c) => c.id === id) ?? notFound('channel');
      applyChannelPatch(channel, raw);
      if (s.channels.some((c) => c.id !== id && c.name === channel.name)) {
        throw new PosternError('ERR_BAD_REQUEST', `a channel named "${channel.name}" exists`, {
          status: 409,
        });
      }
      view = channelView(channel, relay.config.publicUrl);
    });
    ctx.body = view;
  });

  router.delete('/channels/:id', async (ctx) => {
    const id = (relay.channel(ctx.params['id']!, true) ?? notFound('channel')).id;
    await relay.store.updateControl((s) => {
      s.channels = s.channels.filter((c) => c.id !== id);
      for (const a of s.agents) a.channels = a.channels.filter((c) => c !== id);
    });
    relay.dispatcher.forgetChannel(id);
    relay.logger.info({ channelId: id }, 'channel deleted');
    ctx.status = 204;
  });

  // ---- agents
  const agentView = (a: AgentRecord) => ({
    id: a.id,
    name: a.name,
    channels: a.channels,
    paired: a.publicKey !== null,
    connected: relay.tunnel.isConnected(a.id),
    inFlight: relay.tunnel.inFlight(a.id),
    createdAt: iso(a.createdAt),
    lastSeenAt: relay.tunnel.isConnected(a.id) ? iso(relay.now()) : iso(a.lastSeenAt),
    version: a.version,
  });

  /** The `channels` field of an agent request: ids or names of existing channels, as ids. */
  const grantedChannels = (raw: Record<string, unknown>): string[] => {
    if (!Array.isArray(raw['channels']) || raw['channels'].length === 0) {
      fail('channels', 'a non-empty list of channel ids or names');
    }
    const ids = (raw['channels'] as unknown[]).map((c, i) => {
      const channel = typeof c === 'string' ? relay.channel(c, true) : undefined;
      if (!channel) return fail(`channels[${i}]`, 'the id or name of an existing channel');
      return channel.id;
    });
    return [...new Set(ids)];
  };

  /** A fresh one-time code for an agent (a new agent, or one to pair again). */
  const issuePairingCode = async (agent: AgentRecord, isNew: boolean) => {
    const now = relay.now();
    const code = newPairingCode();
    const expiresAt = now + relay.config.pairingTtlMs;
    await relay.store.updateControl((s) => {
      if (isNew) s.agents.push(agent);
      s.pairings = s.pairings.filter((p) => p.expiresAt > now && p.agentId !== agent.id);
      s.pairings.push({ codeHash: hashPairingCode(code), agentId: agent.id, expiresAt });
    });
    return { pairingCode: code, expiresAt: iso(expiresAt), relayUrl: relay.config.publicUrl };
  };

  router.post('/agents', async (ctx) => {
    const raw = await readJsonObject(ctx.req);
    const name = readString(raw, 'name', fail, { min: 1, max: 64 });
    const channels = grantedChannels(raw);
    const now = relay.now();
    const agent: AgentRecord = {
      id: randomId('ag'),
      name,
      channels,
      publicKey: null,
      createdAt: now,
      pairedAt: null,
      lastSeenAt: null,
      version: null,
    };
    const pairing = await issuePairingCode(agent, true);
    relay.logger.info({ agentId: agent.id, name }, 'agent added; waiting for pairing');
    ctx.status = 201;
    ctx.body = { ...agentView(agent), ...pairing };
  });

  // Changes the channels an agent is granted; its live sessions reconnect with the new grants.
  router.patch('/agents/:id', async (ctx) => {
    const id = ctx.params['id']!;
    const raw = await readJsonObject(ctx.req);
    for (const key of Object.keys(raw))
      if (key !== 'channels') fail(key, 'only "channels" can change');
    const channels = grantedChannels(raw);
    let updated: AgentRecord | undefined;
    await relay.store.updateControl((s) => {
      updated = s.agents.find((a) => a.id === id) ?? notFound('agent');
      updated.channels = channels;
    });
    relay.tunnel.closeAgent(id, CloseCode.goingAway, 'channel grants changed; reconnect');
    relay.logger.info({ agentId: id, channels }, 'agent channels changed');
    ctx.body = agentView(updated!);
  });

  // A new one-time code for an existing agent (a lost or rebuilt host): pairing again replaces
  // its key, and the old key's tunnels are closed at that moment.
  router.post('/agents/:id/pairing-code', async (ctx) => {
    const agent =
      relay.store.control().agents.find((a) => a.id === ctx.params['id']) ?? notFound('agent');
    const pairing = await issuePairingCode(agent, false);
    relay.logger.info({ agentId: agent.id }, 'new pairing code issued');
    ctx.status = 201;
    ctx.body = { ...agentView(agent), ...pairing };
  });

  router.get('/agents', (ctx) => {
    ctx.body = { agents: relay.store.control().agents.map(agentView) };
  });

  router.delete('/agents/:id', async (ctx) => {
    const id = ctx.params['id']!;
    if (!relay.store.control().agents.some((a) => a.id === id)) notFound('agent');
    await relay.store.updateControl((s) => {
      s.agents = s.agents.filter((a) => a.id !== id);
      s.pairings = s.pairings.filter((p) => p.agentId !== id);
    });
    relay.tunnel.closeAgent(id, CloseCode.revoked, 'agent revoked');
    relay.logger.info({ agentId: id }, 'agent revoked');
    ctx.status = 204;
  });

  // ---- events
  router.get('/stream', streamHandler(relay, eventView));

  router.get('/events', (ctx) => {
    const q = ctx.query;
    const one = (k: string) => (typeof q[k] === 'string' ? q[k] : undefined);
    const filter: Parameters<typeof relay.store.listEvents>[0] = {
      limit:
        one('limit') === undefined
          ? 50
          : readInt({ limit: Number(one('limit')) }, 'limit', fail, 1, 500),
    };
    const channel = one('channel');
    if (channel !== undefined)
      filter.channelId = (relay.channel(channel, true) ?? notFound('channel')).id;
    const status = one('status');
    if (status !== undefined) filter.status = readEnum({ status }, 'status', STATUSES, fail);
    const before = one('before');
    if (before !== undefined) filter.before = before;
    const page = relay.store.listEvents(filter);
    ctx.body = { events: page.events.map(eventView), next: page.next };
  });

  router.get('/events/:id', async (ctx) => {
    const summary = relay.store.getEvent(ctx.params['id']!) ?? notFound('event');
    const payload = await relay.store.readPayload(summary.id);
    ctx.body = {
      ...eventView(summary),
      originalUrl: payload.originalUrl,
      remoteAddress: payload.remoteAddress,
      headers: payload.headers,
      body: payload.body.toString('base64'),
    };
  });

  // Bulk replay by filter: every matching event is queued again with a fresh retry budget.
  router.post('/events/replay', async (ctx) => {
    const raw = await readJsonObject(ctx.req);
    const status = readEnum(
      { status: raw['status'] ?? 'failed' },
      'status',
      ['failed', 'delivered'],
      fail,
    );
    const channelId =
      raw['channel'] === undefined
        ? undefined
        : (relay.channel(readString(raw, 'channel', fail, { min: 1 }), true) ?? notFound('channel'))
            .id;
    const time = (key: string): number | undefined => {
      if (raw[key] === undefined) return undefined;
      const ms = Date.parse(readString(raw, key, fail, { min: 1, max: 64 }));
      return Number.isNaN(ms) ? fail(key, 'an ISO 8601 date-time') : ms;
    };
    const since = time('since');
    const until = time('until');
    const ids: string[] = [];
    let before: string | undefined;
    do {
      const page = relay.store.listEvents({
        limit: 500,
        status,
        ...(channelId === undefined ? {} : { channelId }),
        ...(before === undefined ? {} : { before }),
      });
      for (const e of page.events) {
        if (since !== undefined && e.receivedAt < since) continue;
        if (until !== undefined && e.receivedAt >= until) continue;
        ids.push(e.id);
      }
      before = page.next ?? undefined;
    } while (before !== undefined);
    // Oldest first, all at once: the store commits them together.
    await Promise.all(ids.reverse().map((id) => relay.dispatcher.replay(id)));
    relay.logger.info({ channelId, status, queued: ids.length }, 'bulk replay');
    ctx.status = 202;
    ctx.body = { queued: ids.length };
  });

  // Unblocks an ordered channel held by a failing event: it becomes `failed` now (replayable).
  router.post('/events/:id/skip', async (ctx) => {
    const summary = await relay.dispatcher.skip(ctx.params['id']!);
    relay.logger.info({ eventId: summary.id }, 'event skipped by an operator');
    ctx.body = eventView(summary);
  });

  router.post('/events/:id/replay', async (ctx) => {
    const summary = await relay.dispatcher.replay(ctx.params['id']!);
    relay.logger.info({ eventId: summary.id }, 'event replayed');
    ctx.status = 202;
    ctx.body = eventView(summary);
  });

  return router;
}
