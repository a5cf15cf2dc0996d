/**
 * The ordering key of an event on an ordered channel with `orderingKey`: a header's value, or
 * a field of the JSON body (a dotted path such as `repository.full_name`). Events whose key
 * cannot be read share the empty key, so they are still kept in order among themselves.
 * Computed only for a verified request; a JSON body is parsed only within JSON_LOOKUP_LIMITS
 * (1 MiB, 64 levels deep), past which it gets the empty key.
 */
import { fieldAt, JSON_LOOKUP_LIMITS, parseJsonBounded } from '../../shared/bounded-json.ts';
import { headerValue } from '../../shared/http.ts';
import type { HeaderPair } from '../../shared/protocol.ts';
import type { ChannelRecord } from '../store/types.ts';

const MAX_KEY = 256;

function jsonField(body: Buffer, path: string): string {
  // Parsing costs time on the event loop and memory: bounded by size and depth.
  const parsed = parseJsonBounded(body, JSON_LOOKUP_LIMITS);
  const value = parsed.ok ? fieldAt(parsed.value, path) : undefined;
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
