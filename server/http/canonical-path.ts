/**
 * The gate in front of the relay's own routes (everything but ingress `/h/…`). Its routers match
 * the raw path exactly and case-sensitively; a target that some other layer (a reverse proxy's
 * location rules, a router, a later middleware) could read as another path is refused here,
 * before any of them sees it. Canonical means: origin-form (RFC 9112 §3.2.1), only the characters
 * the relay's paths use (letters, digits, `-`, `.`, `_`, `~`, all unreserved in RFC 3986 §2.3),
 * no percent-encoding at all, no empty (`//`), dot (`/./`, `/../`) or trailing-dot segment, no
 * `;` parameters, no backslash, no trailing slash. The query is not looked at.
 */
import type { ServerResponse } from 'node:http';

/** One segment: starts and ends with a non-dot; so `.`, `..`, `x.` and `.x` are all refused. */
const SEGMENT = '[A-Za-z0-9_~-](?:[A-Za-z0-9._~-]*[A-Za-z0-9_~-])?';
const CANONICAL_PATH = new RegExp(`^(?:/|(?:/${SEGMENT})+)$`);

/** Whether `target` (a request line's target, `req.url`) has a canonical path. */
export function isCanonicalTarget(target: string): boolean {
  const q = target.indexOf('?');
  return CANONICAL_PATH.test(q < 0 ? target : target.slice(0, q));
}

/** The answer to a request for no route: the same for a refused target and an unknown path. */
export const NOT_FOUND_BODY = JSON.stringify({
  error: { code: 'ERR_NOT_FOUND', message: 'not found' },
});

/**
 * Answers 404 without reading the request body; the connection is closed after the answer so
 * that an unread body is not parsed as the next request (and costs no further reading).
 */
export function refuseTarget(res: ServerResponse): void {
  res.writeHead(404, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(NOT_FOUND_BODY),
    connection: 'close',
  });
  res.end(NOT_FOUND_BODY);
}
