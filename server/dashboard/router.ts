/**
 * The dashboard's HTTP side: `GET /` (the page) and `GET /assets/<hash>.js|.css|.svg`. The
 * assets are loaded once, when the router is made (at relay start); earlier requests wait.
 */
import Router from '@koa/router';
import type { Logger } from 'pino';
import { PosternError } from '../../shared/errors.ts';
import { loadDashboardAssets } from './assets.ts';
import { PAGE_HEADERS, pageHtml } from './page.ts';
import type { DashboardAssets } from './types.ts';

const IMMUTABLE = 'public, max-age=31536000, immutable';

export function dashboardRouter(
  logger: Logger,
  load: () => Promise<DashboardAssets> = loadDashboardAssets,
): Router {
  const started = Date.now();
  const ready: Promise<DashboardAssets | null> = load().then(
    (assets) => {
      logger.debug({ ms: Date.now() - started }, 'dashboard ready');
      return assets;
    },
    (err: unknown) => {
      logger.error({ err }, 'the dashboard could not be built; the relay runs without it');
      return null;
    },
  );
  // Exact paths only (see server/http/canonical-path.ts): no `/Assets/…`, no `/assets/x.js/`.
  const router = new Router({ sensitive: true, strict: true });
  router.get('/', async (ctx) => {
    const loaded = await ready;
    if (!loaded) {
      ctx.status = 503;
      ctx.body = {
        error: { code: 'ERR_UNAVAILABLE', message: 'dashboard unavailable; see the log' },
      };
      return;
    }
    ctx.set(PAGE_HEADERS);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = pageHtml(loaded);
  });
  router.get('/assets/:file', async (ctx) => {
    const loaded = await ready;
    const wanted = `assets/${ctx.params['file']}`;
    const file =
      loaded && [loaded.script, loaded.style, loaded.icon].find((a) => a.path === wanted);
    if (!file) throw new PosternError('ERR_NOT_FOUND', 'no such asset', { status: 404 });
    ctx.set('Cache-Control', IMMUTABLE);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.type = file.contentType;
    ctx.body = file.body;
  });
  return router;
}
