/**
 * The events list under live changes. Rows are kept newest first (event ids are ULIDs, so they
 * sort in arrival order); a change to a shown event updates its row in place, and an event
 * not shown yet is inserted only where the loaded pages cover it.
 */
import type { EventView } from './model.ts';

export interface EventsFilter {
  /** Channel id, or '' for every channel. */
  channel: string;
  /** Status, or '' for every status. */
  status: string;
  /** A search (an event id, or text in header values and bodies), or '' for none. */
  q?: string;
  /** Received at or after / before (ms since the epoch), or null for no bound. */
  since?: number | null;
  until?: number | null;
}

export interface EventsList {
  rows: EventView[];
  /** Cursor for older events, or null when the oldest is loaded. */
  next: string | null;
  /** A search: how many events the relay examined for the pages loaded. */
  examined?: number;
}

export function matches(e: EventView, f: EventsFilter): boolean {
  // A search matches requests the page does not have: only the relay can tell.
  if (f.q) return false;
  const at = e.receivedAt === null ? Number.NaN : Date.parse(e.receivedAt);
  if (typeof f.since === 'number' && !(at >= f.since)) return false;
  if (typeof f.until === 'number' && !(at < f.until)) return false;
  return (
    (f.channel === '' || e.channelId === f.channel) && (f.status === '' || e.status === f.status)
  );
}

/** Ms since the epoch as a `datetime-local` input's value (local time), or '' for null. */
export function localTimeValue(ms: number | null): string {
  if (ms === null) return '';
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return (
    `${String(d.getFullYear()).padStart(4, '0')}-${two(d.getMonth() + 1)}-${two(d.getDate())}` +
    `T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
  );
}

/** A `datetime-local` input's value (local time) as ms since the epoch, or null. */
export function parseLocalTime(value: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(value)) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : ms;
}

export type LiveChange = 'updated' | 'added' | 'ignored';

/** Applies a live change; `added` means the event is newer than every row shown. */
export function applyLive(
  list: EventsList,
  e: EventView,
  f: EventsFilter,
): { list: EventsList; change: LiveChange } {
  const at = list.rows.findIndex((r) => r.id === e.id);
  if (at >= 0) {
    const rows = list.rows.slice();
    rows[at] = e;
    return { list: { ...list, rows }, change: 'updated' };
  }
  if (!matches(e, f)) return { list, change: 'ignored' };
  const oldest = list.rows[list.rows.length - 1];
  // Older than every loaded row while older pages exist: it belongs to a page not shown.
  if (oldest && list.next !== null && e.id < oldest.id) return { list, change: 'ignored' };
  const newest = list.rows[0];
  const rows = list.rows.slice();
  const before = rows.findIndex((r) => r.id < e.id);
  rows.splice(before < 0 ? rows.length : before, 0, e);
  return { list: { ...list, rows }, change: !newest || e.id > newest.id ? 'added' : 'updated' };
}

/** Appends an older page, skipping rows a live change already inserted. */
export function appendPage(list: EventsList, page: EventsList): EventsList {
  const seen = new Set(list.rows.map((r) => r.id));
  const rows = [...list.rows, ...page.rows.filter((r) => !seen.has(r.id))];
  if (list.examined === undefined && page.examined === undefined) return { rows, next: page.next };
  return { rows, next: page.next, examined: (list.examined ?? 0) + (page.examined ?? 0) };
}
