/** Maps errors to JSON answers at the HTTP edge: `{error: {code, message}}`. */
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { isPosternError } from '../../shared/errors.ts';

export function errorMiddleware(logger: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
    } catch (err) {
      if (isPosternError(err)) {
        ctx.status = err.status;
        ctx.body = {
          error: { code: err.code, message: err.expose ? err.message : 'internal error' },
        };
        if (err.status >= 500) logger.error({ err, path: ctx.path }, 'request failed');
        return;
      }
      logger.error({ err, path: ctx.path }, 'unexpected error');
      ctx.status = 500;
      ctx.body = { error: { code: 'ERR_INTERNAL', message: 'internal error' } };
    }
  };
}
