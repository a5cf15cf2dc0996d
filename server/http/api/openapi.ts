/**
 * `GET /api/openapi.json`: the OpenAPI 3.1 document of this API, docs/openapi.json. Imported as
 * JSON (so that the bundled relay holds it too) and served as the file is written: two-space
 * JSON and a final newline, the same bytes (test/server/openapi.test.ts checks both).
 */
import type Router from '@koa/router';
import document from '../../../docs/openapi.json' with { type: 'json' };

/** The document's bytes, made once. */
export const OPENAPI_BYTES: Buffer = Buffer.from(`${JSON.stringify(document, null, 2)}\n`);

export function openApiRoutes(router: Router): void {
  router.get('/openapi.json', (ctx) => {
    ctx.type = 'application/json; charset=utf-8';
    ctx.body = OPENAPI_BYTES;
  });
}
