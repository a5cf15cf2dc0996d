/** What every view of a logged-in page shares: the API client, the live feed, the channels. */
import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { Api } from './api.ts';
import type { FeedState, LiveFeed } from './live.ts';
import type { Channel, EventView } from './model.ts';

export interface Session {
  api: Api;
  feed: LiveFeed;
  /** Every channel, for names and filters; `null` until first loaded. */
  channels: Channel[] | null;
  reloadChannels(): Promise<void>;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside a logged-in page');
  return session;
}

/** Calls the latest `listener` for each live event change while the component is mounted. */
export function useLiveEvents(listener: (e: EventView) => void): void {
  const { feed } = useSession();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => feed.onEvent((e) => latest.current(e)), [feed]);
}

export function useFeedState(): FeedState {
  const { feed } = useSession();
  const [state, setState] = useState(feed.state());
  useEffect(() => {
    setState(feed.state());
    return feed.onState(setState);
  }, [feed]);
  return state;
}

/** The channel's name when known, else its id. */
export function channelName(channels: Channel[] | null, id: string): string {
  return channels?.find((c) => c.id === id)?.name ?? id;
}
