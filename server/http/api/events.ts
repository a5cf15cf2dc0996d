/** `/api/events` and `/api/stream`: list, show, replay (one or in bulk), skip, follow live. */
import type Router from '@koa/router';
import { readEnum, readInt, readString } from '../../../shared/fields.ts';
import { STATUSES } from '../../store/records.ts';
import type { EventSummary } from '../../store/types.ts';
import { WaitingExplainer, type Waiting } from '../../dispatch/waiting.ts';
import { readJsonObject } from '../body.ts';
import type { RelayContext } from '../context.ts';
import { streamHandler } from '../stream.ts';
import { channelOr404, fail, iso, notFound } from './common.ts';

/** An event resource; `waiting` (why it is not done yet) for queued and delivering ones. */
export function eventView(e: EventSummary, waiting?: Waiting): Record<string, unknown> {
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
    ...(waiting ? { waiting } : {}),
  };
}

/** Events examined (requests read) per search request at most; `next` goes on from there. */
export const MAX_EXAMINED = 5_000;
const MAX_SEARCH_CHARS = 256;

/** An ISO 8601 date-time, or (`ms`) milliseconds since the epoch, as ms since the epoch. */
function parseTime(key: string, text: string, ms: boolean): number {
  if (ms && /^\d{1,15}$/.test(text)) return Number(text);
  const at = text.length > 64 ? Number.NaN : Date.parse(text);
  if (Number.isNaN(at)) {
    return fail(key, ms ? 'ms since the epoch or an ISO 8601 date-time' : 'an ISO 8601 date-time');
  }
  return at;
}

export function eventRoutes(router: Router, relay: RelayContext): void {
  const explainer = new WaitingExplainer({
    store: relay.store,
    channel: (id) => relay.channel(id),
    agents: () => relay.control.state.agents,
    connected: (id) => relay.tunnel.isConnected(id) || relay.connectedElsewhere(id),
    deliveringBy: (id) => relay.dispatcher.deliveringBy(id),
    now: relay.now,
  });
  /** Resources of several events, each with why it waits. */
  const views = async (events: readonly EventSummary[]) => {
    const waiting = await explainer.explain(events);
    return events.map((e) => eventView(e, waiting.get(e.id)));
  };
  const view = async (e: EventSummary) => (await views([e]))[0]!;

  router.get('/stream', streamHandler(relay, views));

  router.get('/events', async (ctx) => {
    const q = ctx.query;
    const one = (k: string) => (typeof q[k] === 'string' ? q[k] : undefined);
    const filter: Parameters<typeof relay.store.listEvents>[0] = {
      limit:
        one('limit') === undefined
          ? 50
          : readInt({ limit: Number(one('limit')) }, 'limit', fail, 1, 500),
    };
    const channel = one('channel');
    if (channel !== undefined) filter.channelId = (await channelOr404(relay, channel)).id;
    const status = one('status');
    if (status !== undefined) filter.status = readEnum({ status }, 'status', STATUSES, fail);
    const before = one('before');
    if (before !== undefined) filter.before = before;
    const since = one('since');
    if (since !== undefined) filter.since = parseTime('since', since, true);
    const until = one('until');
    if (until !== undefined) filter.until = parseTime('until', until, true);
    const text = one('q');
    if (text === undefined || text === '') {
      const page = await relay.store.listEvents(filter);
      ctx.body = { events: await views(page.events), next: page.next };
      return;
    }
    if (text.length > MAX_SEARCH_CHARS) fail('q', `at most ${MAX_SEARCH_CHARS} characters`);
    const page = await relay.store.searchEvents({
      ...filter,
      text,
      maxExamined: MAX_EXAMINED,
    });
    ctx.body = { events: await views(page.events), next: page.next, examined: page.examined };
  });

  router.get('/events/:id', async (ctx) => {
    const summary = (await relay.store.getEvent(ctx.params['id']!)) ?? notFound('event');
    const payload = await relay.store.readPayload(summary.id);
    ctx.body = {
      ...(await view(summary)),
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
        : (await channelOr404(relay, readString(raw, 'channel', fail, { min: 1 }))).id;
    const time = (key: string): number | undefined => {
      if (raw[key] === undefined) return undefined;
      return parseTime(key, readString(raw, key, fail, { min: 1, max: 64 }), false);
    };
    const since = time('since');
    const until = time('until');
    const ids: string[] = [];
    let before: string | undefined;
    do {
      const page = await relay.store.listEvents({
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
    ctx.body = await view(summary);
  });

  router.post('/events/:id/replay', async (ctx) => {
    const summary = await relay.dispatcher.replay(ctx.params['id']!);
    relay.logger.info({ eventId: summary.id }, 'event replayed');
    ctx.status = 202;
    ctx.body = await view(summary);
  });
}
