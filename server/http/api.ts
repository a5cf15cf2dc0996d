/**
 * The admin API under `/api`: `POST /api/pair` needs a pairing code; everything else needs the
 * admin token. One module per resource under api/.
 */
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { PosternError } from '../../shared/errors.ts';
import { agentRoutes } from './api/agents.ts';
import { channelRoutes } from './api/channels.ts';
import { eventRoutes } from './api/events.ts';
import { openApiRoutes } from './api/openapi.ts';
import { pairRoutes } from './api/pair.ts';
import { statsRoutes } from './api/stats.ts';
import type { RelayContext } from './context.ts';

/** The one admin path open without the token (it needs a pairing code instead). */
const PAIR_PATH = '/api/pair';
/** Prefixes that need the admin token, compared in lower case. */
const GUARDED = ['/api', '/metrics'];

/**
 * The admin token check, mounted on the whole app ahead of every router. It decides on the
 * path in lower case and by prefix, so that it guards at least every path any router could
 * match (they are case-sensitive and exact, but this check must not depend on it: a router
 * that matched `/API/agents` once let it through without a token).
 */
export function adminAuth(relay: RelayContext) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const path = ctx.path.toLowerCase();
    const guarded = GUARDED.some((p) => path.startsWith(p));
    const open = ctx.method === 'POST' && ctx.path === PAIR_PATH;
    if (guarded && !open && !relay.admin.accepts(ctx.get('authorization'))) {
      throw new PosternError('ERR_UNAUTHORIZED', 'admin token missing or wrong', { status: 401 });
    }
    await next();
  };
}

export function apiRouter(relay: RelayContext): Router {
  const router = new Router({ prefix: '/api', sensitive: true, strict: true });
  pairRoutes(router, relay);
  channelRoutes(router, relay);
  agentRoutes(router, relay);
  eventRoutes(router, relay);
  statsRoutes(router, relay);
  openApiRoutes(router);
  return router;
}
