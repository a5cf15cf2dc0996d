/**
 * What the relay answers while it listens but its store is not open yet (a database that
 * cannot be reached at start): alive (`/healthz`), not ready (`/readyz`), and 503 with
 * Retry-After for everything else, so that providers retry instead of losing a webhook.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { INGRESS_SECURITY_HEADERS } from './ingress-answers.ts';

/** Seconds a client is asked to wait before trying again. */
export const STARTING_RETRY_AFTER_S = 5;

/** `/readyz` while the store cannot be reached. */
export const STORE_UNAVAILABLE_BODY = '{"status":"not ready","store":"unavailable"}';

function send(res: ServerResponse, status: number, body: string, extra: object = {}): void {
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...INGRESS_SECURITY_HEADERS,
    ...extra,
  });
  res.end(body);
}

export function startingHandler(req: IncomingMessage, res: ServerResponse): void {
  const target = req.url ?? '';
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (target === '/healthz') return send(res, 200, '{"status":"ok"}');
    if (target === '/readyz') return send(res, 503, STORE_UNAVAILABLE_BODY);
  }
  send(
    res,
    503,
    JSON.stringify({
      error: { code: 'ERR_UNAVAILABLE', message: 'the relay is starting; retry later' },
    }),
    { 'retry-after': String(STARTING_RETRY_AFTER_S) },
  );
}
