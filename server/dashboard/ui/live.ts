/**
 * The live feed: one `GET /api/stream` per logged-in page, shared by every view. It reconnects
 * with capped exponential backoff; views reload their lists on each (re)connection, since
 * changes made while the stream was down are not replayed.
 */
import { decodeEvent, type EventView } from './model.ts';
import { readEventStream, StreamRefused } from './sse.ts';

export type FeedState = 'connecting' | 'live' | 'offline';

export interface LiveFeed {
  /** Calls `listener` with each changed event; returns the unsubscribe function. */
  onEvent(listener: (e: EventView) => void): () => void;
  /** Calls `listener` with each state change (not the current one); returns the unsubscribe. */
  onState(listener: (s: FeedState) => void): () => void;
  state(): FeedState;
  close(): void;
}

const MAX_BACKOFF_MS = 15_000;

export function openLiveFeed(token: string, onUnauthorized: () => void): LiveFeed {
  const events = new Set<(e: EventView) => void>();
  const states = new Set<(s: FeedState) => void>();
  const abort = new AbortController();
  let state: FeedState = 'connecting';
  const setState = (next: FeedState) => {
    if (next === state) return;
    state = next;
    for (const l of states) l(next);
  };

  const run = async () => {
    let failures = 0;
    while (!abort.signal.aborted) {
      setState(failures === 0 ? 'connecting' : 'offline');
      try {
        await readEventStream({
          url: 'api/stream',
          token,
          signal: abort.signal,
          onOpen: () => {
            failures = 0;
            setState('live');
          },
          onMessage: (m) => {
            if (m.event !== 'event') return;
            let view: EventView;
            try {
              view = decodeEvent(JSON.parse(m.data));
            } catch {
              return; // a change the dashboard cannot read is skipped, not fatal
            }
            for (const l of events) l(view);
          },
        });
      } catch (err) {
        if (err instanceof StreamRefused && err.status === 401) {
          onUnauthorized();
          return;
        }
      }
      if (abort.signal.aborted) return;
      failures += 1;
      setState('offline');
      const wait = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 5));
      await new Promise((resolve) => setTimeout(resolve, wait * (0.5 + Math.random() / 2)));
    }
  };
  void run();

  return {
    onEvent(listener) {
      events.add(listener);
      return () => events.delete(listener);
    },
    onState(listener) {
      states.add(listener);
      return () => states.delete(listener);
    },
    state: () => state,
    close() {
      abort.abort();
      events.clear();
      states.clear();
    },
  };
}
