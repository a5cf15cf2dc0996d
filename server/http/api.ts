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
import { pairRoutes } from './api/pair.ts';
import type { RelayContext } from './context.ts';

export function apiRouter(relay: RelayContext): Router {
  const router = new Router({ prefix: '/api' });
  pairRoutes(router, relay);
  router.use(async (ctx: Context, next: Next) => {
    if (!relay.admin.accepts(ctx.get('authorization'))) {
      throw new PosternError('ERR_UNAUTHORIZED', 'admin token missing or wrong', { status: 401 });
    }
    await next();
  });
  channelRoutes(router, relay);
  agentRoutes(router, relay);
  eventRoutes(router, relay);
  return router;
}
