/**
 * The ordering key of an event on an ordered channel with `orderingKey`: a header's value, or
 * a field of the JSON body (a dotted path such as `repository.full_name`). Events whose key
 * cannot be read share the empty key, so they are still kept in order among themselves.
 * Computed only for a verified request, and a body over MAX_KEYED_BODY_BYTES is not parsed.
 */
import { headerValue } from '../../shared/http.ts';
import type { HeaderPair } from '../../shared/protocol.ts';
import type { ChannelRecord } from '../store/types.ts';

const MAX_KEY = 256;

/** A JSON body larger than this is not parsed for its key (it gets the empty key). */
export const MAX_KEYED_BODY_BYTES = 1024 * 1024;

function jsonField(body: Buffer, path: string): string {
  // JSON.parse blocks the event loop for the whole body: keep that bounded.
  if (body.length > MAX_KEYED_BODY_BYTES) return '';
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return '';
  }
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return '';
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return '';
}

export function orderKeyOf(
  channel: ChannelRecord,
  headers: readonly HeaderPair[],
  body: Buffer,
): string | undefined {
  const rule = channel.ordered ? channel.orderingKey : null;
  if (!rule) return undefined;
  const key =
    'header' in rule ? (headerValue(headers, rule.header) ?? '') : jsonField(body, rule.jsonField);
  return key.slice(0, MAX_KEY);
}
