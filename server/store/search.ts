/**
 * Search in events' requests, for both stores: a listing (newest first, the same filters and
 * cursor) whose events are kept when their header values or body hold the text. The requests
 * are read a page at a time (the PostgreSQL store batches concurrent reads into one query),
 * and at most `maxExamined` events are looked at per call: the answer tells how many were and
 * gives the cursor to go on.
 */
import { PosternError } from '../../shared/errors.ts';
import type { EventPayload, EventSearch, EventSummary, SearchPage, Store } from './types.ts';

/** Events whose requests are read together. */
const SCAN_PAGE = 200;

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

export async function searchEvents(
  store: Pick<Store, 'listEvents' | 'readPayload' | 'getEvent'>,
  search: EventSearch,
): Promise<SearchPage> {
  const { text, maxExamined, limit, before, ...filter } = search;
  const events: EventSummary[] = [];
  if (limit < 1 || maxExamined < 1) return { events, next: null, examined: 0 };
  if (before === undefined && EVENT_ID.test(text)) {
    const one = await store.getEvent(text);
    if (one) return { events: inFilter(one, search) ? [one] : [], next: null, examined: 1 };
  }
  const needle = text.toLowerCase();
  let examined = 0;
  let cursor = before;
  for (;;) {
    const page = await store.listEvents({
      ...filter,
      ...(cursor === undefined ? {} : { before: cursor }),
      limit: Math.min(SCAN_PAGE, maxExamined - examined),
    });
    const payloads = await Promise.all(
      page.events.map((e) =>
        store.readPayload(e.id).catch((err: unknown) => {
          // Removed since it was listed (retention): it matches nothing.
          if (err instanceof PosternError && err.code === 'ERR_NOT_FOUND') return undefined;
          throw err;
        }),
      ),
    );
    for (const [i, e] of page.events.entries()) {
      examined++;
      const payload = payloads[i];
      if (!payload || !payloadMatches(payload, needle)) continue;
      events.push(e);
      if (events.length === limit) {
        const last = page.next === null && i === page.events.length - 1;
        return { events, next: last ? null : e.id, examined };
      }
    }
    if (page.next === null || page.events.length === 0) return { events, next: null, examined };
    if (examined >= maxExamined) return { events, next: page.events.at(-1)!.id, examined };
    cursor = page.next;
  }
}
