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
}

export interface EventsList {
  rows: EventView[];
  /** Cursor for older events, or null when the oldest is loaded. */
  next: string | null;
}

export function matches(e: EventView, f: EventsFilter): boolean {
  return (
    (f.channel === '' || e.channelId === f.channel) && (f.status === '' || e.status === f.status)
  );
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
  return { rows: [...list.rows, ...page.rows.filter((r) => !seen.has(r.id))], next: page.next };
}
