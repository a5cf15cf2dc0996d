/**
 * What a channel takes before its body is read: the HTTP methods (`methods`) and the path
 * suffixes after `/h/<channel-id>` (`paths`). A captured signed request resent with another
 * method or to another path is refused here, so the app never sees `PUT /admin/reindex`.
 */
import { PosternError } from '../../shared/errors.ts';
import type { Fail } from '../../shared/fields.ts';
import type { ChannelRecord } from '../store/types.ts';
import { providerMethods } from '../verify/index.ts';

export const MAX_METHODS = 16;
export const MAX_PATHS = 64;
export const MAX_PATH_LENGTH = 256;

/** Upper-case letters: GET, POST, PUT, PATCH, DELETE, … (RFC 9110 §9 names them so). */
const METHOD = /^[A-Z]{1,20}$/;
/** A prefix pattern: the suffix starts with what comes before the `*`. */
const PREFIX_SUFFIX = '/*';

/** Validates a channel's `methods`: null, or 1 to 16 distinct upper-case method names. */
export function parseMethods(value: unknown, fail: Fail): string[] | null {
  if (value === null) return null;
  const expected = `null or a list of 1 to ${MAX_METHODS} distinct upper-case HTTP methods such as ["POST", "GET"]`;
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_METHODS) {
    return fail('methods', expected);
  }
  const methods: string[] = [];
  for (const [i, m] of value.entries()) {
    if (typeof m !== 'string' || !METHOD.test(m))
      return fail(`methods[${i}]`, 'an upper-case HTTP method such as "POST"');
    if (methods.includes(m)) return fail(`methods[${i}]`, `a method not listed already (${m})`);
    methods.push(m);
  }
  return methods;
}

/**
 * The canonical form of a path, as the agent's URL parser will resolve it (dot segments,
 * `%2e`, backslashes), or null when it is no path at all.
 */
function canonicalPath(path: string): string | null {
  try {
    return new URL(path, 'http://channel.invalid').pathname;
  } catch {
    return null;
  }
}

/** Validates one `paths` entry: `""`, an exact `/a/b`, or a prefix `/a/*`. */
function parsePath(value: unknown, field: string, fail: Fail): string {
  const expected = `"" (no suffix), an exact suffix such as "/push", or a prefix such as "/github/*", at most ${MAX_PATH_LENGTH} characters, without "." or ".." segments, "?" or "#"`;
  if (typeof value !== 'string' || value.length > MAX_PATH_LENGTH) return fail(field, expected);
  if (value === '') return value;
  const base = value.endsWith(PREFIX_SUFFIX) ? value.slice(0, -1) : value;
  if (!base.startsWith('/') || base.includes('*') || /[?#\\]/.test(base)) {
    return fail(field, expected);
  }
  // Only a path that stays as written can ever match (see `pathAllowed`).
  if (canonicalPath(base) !== base) return fail(field, expected);
  return value;
}

/** Validates a channel's `paths`: null, or 1 to 64 distinct suffix patterns. */
export function parsePaths(value: unknown, fail: Fail): string[] | null {
  if (value === null) return null;
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_PATHS) {
    return fail('paths', `null or a list of 1 to ${MAX_PATHS} path suffixes`);
  }
  const paths: string[] = [];
  for (const [i, p] of value.entries()) {
    const path = parsePath(p, `paths[${i}]`, fail);
    if (paths.includes(path)) return fail(`paths[${i}]`, `a suffix not listed already (${path})`);
    paths.push(path);
  }
  return paths;
}

/** The methods the channel takes, or null for any. */
export function allowedMethods(channel: ChannelRecord): readonly string[] | null {
  if (channel.methods) return channel.methods;
  return channel.verify ? providerMethods(channel.verify) : null;
}

/**
 * Whether `suffix` (the raw path after the channel id) matches one of the channel's `paths`.
 * A suffix that a URL parser would rewrite (`/github/../admin`, `/github/%2e%2e/admin`,
 * `/github\admin`) matches nothing: the app would see another path than the one checked.
 */
export function pathAllowed(channel: ChannelRecord, suffix: string): boolean {
  if (!channel.paths) return true;
  if (suffix === '') return channel.paths.includes('');
  if (canonicalPath(suffix) !== suffix) return false;
  return channel.paths.some((p) =>
    p.endsWith(PREFIX_SUFFIX) ? suffix.startsWith(p.slice(0, -1)) : p === suffix,
  );
}

/** The refusal of a request the channel does not take (with its extra headers), or null. */
export function refusalOf(
  channel: ChannelRecord,
  method: string,
  suffix: string,
): { error: PosternError; headers: Record<string, string>; outcome: string } | null {
  const methods = allowedMethods(channel);
  if (methods && !methods.includes(method)) {
    return {
      error: new PosternError(
        'ERR_METHOD_NOT_ALLOWED',
        `method ${method} not allowed on this channel`,
        {
          status: 405,
          expose: true,
        },
      ),
      headers: { allow: methods.join(', ') },
      outcome: 'method_not_allowed',
    };
  }
  if (!pathAllowed(channel, suffix)) {
    return {
      error: new PosternError('ERR_NOT_FOUND', 'path not allowed on this channel', {
        status: 404,
        expose: true,
      }),
      headers: {},
      outcome: 'path_not_allowed',
    };
  }
  return null;
}
