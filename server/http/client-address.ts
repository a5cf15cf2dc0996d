/**
 * The address a request came from, for rate limits. Behind a reverse proxy every request comes
 * from the proxy, so with `--trust-proxy` the rightmost `X-Forwarded-For` entry (the one the
 * proxy itself appended) is used instead. Only trust it when a proxy always sets that header.
 */
import type { IncomingMessage } from 'node:http';

export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  const peer = req.socket.remoteAddress ?? '';
  if (!trustProxy) return peer;
  const header = req.headers['x-forwarded-for'];
  const value = Array.isArray(header) ? header.at(-1) : header;
  const last = value?.split(',').at(-1)?.trim();
  return last || peer;
}
