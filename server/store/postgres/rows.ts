/**
 * What comes back from the database, checked on the way in (parse, don't cast): summaries are
 * built by postern_summary() in the schema, as JSON.
 */
import { PosternError } from '../../../shared/errors.ts';
import { isObject, readEnum, readInt, readString, type Fail } from '../../../shared/fields.ts';
import { readAttempt, STATUSES } from '../records.ts';
import type { EventSummary } from '../types.ts';

const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_STORE_CORRUPT', `database: ${field} is not ${expected}`);
};

const MAX_MS = Number.MAX_SAFE_INTEGER;

/** An EventSummary from postern_summary()'s JSON. */
export function parseSummary(value: unknown): EventSummary {
  if (!isObject(value)) return fail('summary', 'an object');
  const attempts = value['attempts'];
  const routes = value['deliveredRoutes'];
  const reason = value['reason'];
  if (!Array.isArray(attempts)) return fail('attempts', 'a list');
  if (!Array.isArray(routes) || !routes.every((r) => typeof r === 'string')) {
    return fail('deliveredRoutes', 'a list of names');
  }
  return {
    id: readString(value, 'id', fail),
    channelId: readString(value, 'channelId', fail),
    status: readEnum(value, 'status', STATUSES, fail),
    receivedAt: readInt(value, 'receivedAt', fail, -MAX_MS, MAX_MS),
    method: readString(value, 'method', fail),
    path: readString(value, 'path', fail, { max: 1 << 20 }),
    query: readString(value, 'query', fail, { max: 1 << 20 }),
    size: readInt(value, 'size', fail, 0, MAX_MS),
    attemptCount: readInt(value, 'attemptCount', fail, 0, MAX_MS),
    attempts: attempts.map((a: unknown) => readAttempt(a, fail)),
    nextAttemptAt: readInt(value, 'nextAttemptAt', fail, -MAX_MS, MAX_MS),
    reason: typeof reason === 'string' ? reason : null,
    orderKey: readString(value, 'orderKey', fail, { min: 0 }),
    deliveredRoutes: routes as string[],
    replays: readInt(value, 'replays', fail, 0, MAX_MS),
  };
}

/** A bigint column (node-postgres returns int8 as a string). */
export function toNumber(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) return fail('a bigint column', 'a safe integer');
  return n;
}

/**
 * JSON for the database: jsonb cannot hold U+0000, which an attempt's error text might; it
 * becomes U+FFFD.
 */
export function toJsonb(value: unknown): string {
  return JSON.stringify(value).replaceAll('\\u0000', '\\ufffd');
}
