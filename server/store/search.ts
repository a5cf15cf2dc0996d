/**
 * Search in events' requests, for both stores: a listing (newest first, the same filters and
 * cursor) whose events are kept when their header values or body hold the text. The requests
 * are read a page at a time (the PostgreSQL store batches concurrent reads into one query),
 * and at most `maxExamined` events are looked at per call: the answer tells how many were and
 * gives the cursor to go on.
 */
import { PosternError } from '../../shared/errors.ts';
import type { EventPayload, EventSearch, EventSummary, SearchPage, Store } from './types.ts';

/** Events listed together. */
const SCAN_PAGE = 200;
/** Bytes of bodies read together at most (one event at least). */
const READ_BYTES = 8 * 1024 * 1024;
/** Bytes of bodies examined per call at most, unless `maxBytes` says otherwise. */
export const MAX_SEARCH_BYTES = 64 * 1024 * 1024;

/** What an event id looks like (`evt_` and a ULID). */
const EVENT_ID = /^evt_[0-9a-z]{26}$/;

/** Whether a header value or the body (as UTF-8) holds `needle` (already lower case). */
export function payloadMatches(payload: EventPayload, needle: string): boolean {
  if (needle === '') return true;
  for (const [, value] of payload.headers) {
    if (value.toLowerCase().includes(needle)) return true;
  }
  return payload.body.length > 0 && payload.body.toString('utf8').toLowerCase().includes(needle);
}

function inFilter(e: EventSummary, search: EventSearch): boolean {
  return (
    (search.channelId === undefined || e.channelId === search.channelId) &&
    (search.status === undefined || e.status === search.status) &&
    (search.since === undefined || e.receivedAt >= search.since) &&
    (search.until === undefined || e.receivedAt < search.until)
  );
}

/** What a search needs of a store. */
export interface SearchSource extends Pick<Store, 'listEvents' | 'getEvent'> {
  /** The requests of these events, in order; undefined for one removed since it was listed. */
  readPayloads(ids: readonly string[]): Promise<(EventPayload | undefined)[]>;
}

/** `readPayloads` through a store's `readPayload`, one event at a time. */
export async function readEach(
  store: Pick<Store, 'readPayload'>,
  ids: readonly string[],
): Promise<(EventPayload | undefined)[]> {
  return Promise.all(
    ids.map(async (id) => {
      try {
        return await store.readPayload(id);
      } catch (err) {
        if (err instanceof PosternError && err.code === 'ERR_NOT_FOUND') return undefined;
        throw err;
      }
    }),
  );
}

export async function searchEvents(store: SearchSource, search: EventSearch): Promise<SearchPage> {
  const { text, maxExamined, limit, before, maxBytes = MAX_SEARCH_BYTES, ...filter } = search;
  const events: EventSummary[] = [];
  if (limit < 1 || maxExamined < 1) return { events, next: null, examined: 0 };
  if (before === undefined && EVENT_ID.test(text)) {
    const one = await store.getEvent(text);
    if (one) return { events: inFilter(one, search) ? [one] : [], next: null, examined: 1 };
  }
  const needle = text.toLowerCase();
  let examined = 0;
  let bytes = 0;
  let cursor = before;
  for (;;) {
    const page = await store.listEvents({
      ...filter,
      ...(cursor === undefined ? {} : { before: cursor }),
      limit: Math.min(SCAN_PAGE, maxExamined - examined),
    });
    const rows = page.events;
    for (let i = 0; i < rows.length;) {
      // A group of events read together, bounded in bytes.
      let j = i + 1;
      let group = rows[i]!.size;
      while (j < rows.length && group + rows[j]!.size <= READ_BYTES) group += rows[j++]!.size;
      const payloads = await store.readPayloads(rows.slice(i, j).map((e) => e.id));
      for (let k = i; k < j; k++) {
        const e = rows[k]!;
        examined++;
        bytes += e.size;
        const payload = payloads[k - i];
        const last = page.next === null && k === rows.length - 1;
        if (payload && payloadMatches(payload, needle)) {
          events.push(e);
          if (events.length === limit) return { events, next: last ? null : e.id, examined };
        }
        if (bytes >= maxBytes && !last) return { events, next: e.id, examined };
      }
      i = j;
    }
    if (page.next === null || page.events.length === 0) return { events, next: null, examined };
    if (examined >= maxExamined) return { events, next: page.events.at(-1)!.id, examined };
    cursor = page.next;
  }
}
