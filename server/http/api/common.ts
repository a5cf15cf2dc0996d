/** What the admin API's route modules share: field errors, 404s, timestamps. */
import { PosternError } from '../../../shared/errors.ts';
import type { Fail } from '../../../shared/fields.ts';

export const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_BAD_REQUEST', `${field}: expected ${expected}`, { status: 400 });
};

export function notFound(what: string): never {
  throw new PosternError('ERR_NOT_FOUND', `no such ${what}`, { status: 404 });
}

/** A timestamp as API answers show it: ISO 8601, or null when unset. */
export const iso = (ms: number | null) =>
  ms === null || ms === 0 ? null : new Date(ms).toISOString();
