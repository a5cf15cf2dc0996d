/**
 * The events view: filters (channel, status, a search and a time range), the live-updated
 * list, paging to older events, and bulk replay of a channel's failed events.
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { EventsTable } from './events-table.tsx';
import {
  applyLive,
  appendPage,
  localTimeValue,
  parseLocalTime,
  type EventsFilter,
  type EventsList,
} from './events-state.ts';
import { errorText, plural } from './format.ts';
import { STATUSES, type EventView } from './model.ts';
import { channelName, useFeedState, useLiveEvents, useSession } from './session.ts';

const PAGE_SIZE = 50;
/** Kept across views, so coming back from an event's detail keeps the filter. */
let lastFilter: EventsFilter = { channel: '', status: '', q: '', since: null, until: null };
/** The longest search the relay takes. */
const MAX_SEARCH = 256;

export function EventsView() {
  const { api, channels } = useSession();
  const [filter, setFilterState] = useState<EventsFilter>(lastFilter);
  const [list, setListState] = useState<EventsList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [liveCount, setLiveCount] = useState(0);
  const [fresh, setFresh] = useState<ReadonlySet<string>>(new Set());
  const [replayNote, setReplayNote] = useState<string | null>(null);
  const [replaying, setReplaying] = useState(false);
  const [searchDraft, setSearchDraft] = useState(lastFilter.q ?? '');

  // The list as a ref too: live changes are applied to the latest one, outside of rendering.
  const listRef = useRef<EventsList | null>(null);
  const filterRef = useRef(filter);
  const generation = useRef(0);
  /** Live changes that arrive while a page loads, applied on top of it. */
  const pending = useRef<EventView[] | null>(null);

  const setList = (l: EventsList | null) => {
    listRef.current = l;
    setListState(l);
  };
  const setFilter = (f: EventsFilter) => {
    lastFilter = f;
    filterRef.current = f;
    setFilterState(f);
  };

  const load = useCallback(async () => {
    const gen = ++generation.current;
    const f = filterRef.current;
    // A reload (the stream came back): what it showed, so that an event received live while
    // the page loads still counts as new once listed.
    const shown = listRef.current ? new Set(listRef.current.rows.map((r) => r.id)) : null;
    pending.current = [];
    setError(null);
    try {
      const page = await api.events({ ...f, limit: PAGE_SIZE });
      if (gen !== generation.current) return;
      let l: EventsList = {
        rows: page.events,
        next: page.next,
        ...(page.examined === null ? {} : { examined: page.examined }),
      };
      const arrived = new Set<string>();
      for (const e of pending.current) {
        const applied = applyLive(l, e, f);
        l = applied.list;
        if (shown && applied.change !== 'ignored' && !shown.has(e.id)) arrived.add(e.id);
      }
      setList(l);
      if (arrived.size > 0) {
        setLiveCount((n) => n + arrived.size);
        setFresh((s) => new Set([...s, ...arrived]));
      }
    } catch (err) {
      if (gen === generation.current) setError(`Could not load events: ${errorText(err)}`);
    } finally {
      if (gen === generation.current) pending.current = null;
    }
  }, [api]);

  useEffect(() => {
    setList(null);
    setLiveCount(0);
    setFresh(new Set());
    void load();
  }, [filter, load]);

  // After the stream (re)connects, list again: changes made while it was down are not replayed.
  const feedState = useFeedState();
  const lastFeedState = useRef(feedState);
  useEffect(() => {
    const was = lastFeedState.current;
    lastFeedState.current = feedState;
    if (feedState === 'live' && was !== 'live' && (was === 'offline' || listRef.current)) {
      void load();
    }
  }, [feedState, load]);

  useLiveEvents((e) => {
    if (pending.current) {
      pending.current.push(e);
      return;
    }
    const current = listRef.current;
    if (!current) return;
    const { list: next, change } = applyLive(current, e, filterRef.current);
    if (change === 'ignored') return;
    setList(next);
    if (change === 'added') {
      setLiveCount((n) => n + 1);
      setFresh((s) => new Set(s).add(e.id));
    }
  });

  const older = async () => {
    const current = listRef.current;
    if (!current?.next) return;
    setLoadingOlder(true);
    const gen = generation.current;
    try {
      const f = filterRef.current;
      const page = await api.events({ ...f, before: current.next, limit: PAGE_SIZE });
      const latest = listRef.current;
      if (gen === generation.current && latest) {
        setList(
          appendPage(latest, {
            rows: page.events,
            next: page.next,
            ...(page.examined === null ? {} : { examined: page.examined }),
          }),
        );
      }
    } catch (err) {
      setError(`Could not load older events: ${errorText(err)}`);
    } finally {
      setLoadingOlder(false);
    }
  };

  const replayFailed = async () => {
    const channel = filter.channel;
    if (!channel) return;
    setReplaying(true);
    setReplayNote(null);
    try {
      const n = await api.replayFailed(channel);
      setReplayNote(
        `Queued ${plural(n, 'failed event')} of ${channelName(channels, channel)} for replay.`,
      );
    } catch (err) {
      setReplayNote(`Replay failed: ${errorText(err)}`);
    } finally {
      setReplaying(false);
    }
  };

  return (
    <section aria-labelledby="events-heading">
      <h2 id="events-heading" tabIndex={-1}>
        Events
      </h2>
      <form
        class="toolbar"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter({ ...filter, q: searchDraft.trim() });
        }}
      >
        <div class="field search-field">
          <label for="filter-q">Search</label>
          <div class="search-row">
            <input
              id="filter-q"
              type="search"
              value={searchDraft}
              maxLength={MAX_SEARCH}
              placeholder="Event id, header value or body text"
              aria-describedby="search-help"
              onInput={(e) => setSearchDraft(e.currentTarget.value)}
            />
            <button type="submit">Search</button>
          </div>
          <span id="search-help" class="hint">
            any case; the relay looks at up to 5,000 events at a time
          </span>
        </div>
        <div class="field">
          <label for="filter-since">From</label>
          <input
            id="filter-since"
            type="datetime-local"
            step={1}
            value={localTimeValue(filter.since ?? null)}
            onChange={(e) => setFilter({ ...filter, since: parseLocalTime(e.currentTarget.value) })}
          />
        </div>
        <div class="field">
          <label for="filter-until">To</label>
          <input
            id="filter-until"
            type="datetime-local"
            step={1}
            value={localTimeValue(filter.until ?? null)}
            onChange={(e) => setFilter({ ...filter, until: parseLocalTime(e.currentTarget.value) })}
          />
        </div>
        <div class="field">
          <label for="filter-channel">Channel</label>
          <select
            id="filter-channel"
            value={filter.channel}
            onChange={(e) => setFilter({ ...filter, channel: e.currentTarget.value })}
          >
            <option value="">All channels</option>
            {(channels ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-status">Status</label>
          <select
            id="filter-status"
            value={filter.status}
            onChange={(e) => setFilter({ ...filter, status: e.currentTarget.value })}
          >
            <option value="">All statuses</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        {(filter.q || filter.since != null || filter.until != null) && (
          <div class="field">
            <button
              type="button"
              onClick={() => {
                setSearchDraft('');
                setFilter({ ...filter, q: '', since: null, until: null });
              }}
            >
              Clear search and range
            </button>
          </div>
        )}
        <div class="field">
          <button
            type="button"
            onClick={replayFailed}
            disabled={!filter.channel || replaying}
            aria-describedby="replay-help"
          >
            Replay all failed events
          </button>
          <span id="replay-help" class="hint">
            {filter.channel
              ? `of channel ${channelName(channels, filter.channel)}`
              : 'choose a channel first'}
          </span>
        </div>
      </form>
      <p class="note" role="status">
        {replayNote}
      </p>
      <p class="live-count" aria-live="polite" aria-atomic="true">
        {filter.q
          ? 'A search shows what the relay found: search again for events that arrive later.'
          : liveCount === 0
            ? 'New events appear here as they arrive.'
            : `${plural(liveCount, 'new event')} received live.`}
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list === null && !error && <p class="muted">Loading…</p>}
      {list?.examined !== undefined && (
        <p class="muted search-note" role="status">
          {list.next
            ? `Searched the ${plural(list.examined, 'newest event')} so far: search older events for more.`
            : `Searched ${plural(list.examined, 'event')}, back to the oldest.`}
        </p>
      )}
      {list && list.rows.length === 0 && (
        <p class="empty">
          No events
          {filter.channel ||
          filter.status ||
          filter.q ||
          filter.since != null ||
          filter.until != null
            ? ' match this filter'
            : ' yet'}
          .
        </p>
      )}
      {list && list.rows.length > 0 && (
        <EventsTable rows={list.rows} channels={channels} fresh={fresh} />
      )}
      {list?.next && (
        <p>
          <button type="button" onClick={older} disabled={loadingOlder}>
            {loadingOlder ? 'Loading…' : filter.q ? 'Search older events' : 'Older events'}
          </button>
        </p>
      )}
    </section>
  );
}
