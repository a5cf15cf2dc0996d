/**
 * Ingress refuses what the tunnel cannot carry: every field of a `deliver` frame has a bound
 * (shared/protocol.ts), and an event stored past one of them could never reach an agent. The
 * bounds are checked here, from the same constants the agent's decoder uses, before anything
 * is stored.
 */
import type { IncomingMessage } from 'node:http';
import { PosternError } from '../../shared/errors.ts';
import {
  MAX_HEADER_PAIRS,
  MAX_METHOD_CHARS,
  MAX_ORIGINAL_URL_CHARS,
  MAX_PATH_CHARS,
  MAX_QUERY_CHARS,
} from '../../shared/protocol.ts';

/** The refusal for a request the tunnel cannot carry, or null when it fits. */
export function untransportable(
  req: IncomingMessage,
  path: string,
  query: string,
  originalUrl: string,
): PosternError | null {
  const headerPairs = req.rawHeaders.length / 2;
  if (headerPairs > MAX_HEADER_PAIRS) {
    return new PosternError(
      'ERR_HEADERS_TOO_LARGE',
      `request has ${headerPairs} headers; at most ${MAX_HEADER_PAIRS} are accepted`,
      { status: 431 },
    );
  }
  const tooLong = (what: string, length: number, max: number) =>
    new PosternError('ERR_URI_TOO_LONG', `${what} is ${length} characters; at most ${max}`, {
      status: 414,
    });
  if (path.length > MAX_PATH_CHARS) return tooLong('path', path.length, MAX_PATH_CHARS);
  if (query.length > MAX_QUERY_CHARS) return tooLong('query', query.length, MAX_QUERY_CHARS);
  if (originalUrl.length > MAX_ORIGINAL_URL_CHARS) {
    return tooLong('URL', originalUrl.length, MAX_ORIGINAL_URL_CHARS);
  }
  const method = req.method ?? '';
  if (method.length === 0 || method.length > MAX_METHOD_CHARS) {
    return new PosternError('ERR_BAD_REQUEST', `method of at most ${MAX_METHOD_CHARS} characters`, {
      status: 400,
    });
  }
  return null;
}
