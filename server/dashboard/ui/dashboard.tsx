/** A logged-in page: the header (sections, live state, log out) and the current view. */
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { AgentsView } from './agents.tsx';
import { Api } from './api.ts';
import { ChannelsView } from './channels.tsx';
import { ChartsView } from './charts.tsx';
import { EventDetailView } from './event-detail.tsx';
import { EventsView } from './events.tsx';
import { openLiveFeed } from './live.ts';
import type { Channel } from './model.ts';
import { href, useRoute, type Route } from './route.ts';
import { SessionContext, useFeedState, type Session } from './session.ts';

const REFUSED = 'The relay refused the admin token (was it changed?). Log in again.';

const SECTIONS: { route: Route; label: string }[] = [
  { route: { view: 'events' }, label: 'Events' },
  { route: { view: 'agents' }, label: 'Agents' },
  { route: { view: 'channels' }, label: 'Channels' },
  { route: { view: 'charts' }, label: 'Charts' },
];

function FeedIndicator() {
  const state = useFeedState();
  const label = { connecting: 'Connecting…', live: 'Live', offline: 'Offline, reconnecting…' }[
    state
  ];
  return (
    <span class={`feed feed-${state}`} role="status" data-state={state}>
      {label}
    </span>
  );
}

export function Dashboard(props: { token: string; onLogout: (why?: string) => void }) {
  const { token, onLogout } = props;
  const refused = useCallback(() => onLogout(REFUSED), [onLogout]);
  const api = useMemo(() => new Api(token, refused), [token, refused]);
  const feed = useMemo(() => openLiveFeed(token, refused), [token, refused]);
  useEffect(() => () => feed.close(), [feed]);

  const [channels, setChannels] = useState<Channel[] | null>(null);
  const reloadChannels = useCallback(async () => {
    try {
      setChannels(await api.channels());
    } catch {
      // the views that need channels show their own errors
    }
  }, [api]);
  useEffect(() => {
    void reloadChannels();
  }, [reloadChannels]);

  const session: Session = useMemo(
    () => ({ api, feed, channels, reloadChannels }),
    [api, feed, channels, reloadChannels],
  );

  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  useEffect(() => {
    // Move focus to the new view's heading, so keyboard and screen reader users follow along.
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.querySelector<HTMLElement>('h2')?.focus();
  }, [route]);

  const current = route.view === 'event' ? 'events' : route.view;
  return (
    <SessionContext.Provider value={session}>
      <header class="topbar">
        <p class="brand">Postern</p>
        <nav aria-label="Sections">
          <ul>
            {SECTIONS.map((s) => (
              <li key={s.route.view}>
                <a
                  href={href(s.route)}
                  aria-current={current === s.route.view ? 'page' : undefined}
                >
                  {s.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <FeedIndicator />
        <button type="button" onClick={() => onLogout()}>
          Log out
        </button>
      </header>
      <main ref={main}>
        {route.view === 'events' && <EventsView />}
        {route.view === 'event' && <EventDetailView key={route.id} id={route.id} />}
        {route.view === 'agents' && <AgentsView />}
        {route.view === 'channels' && <ChannelsView />}
        {route.view === 'charts' && <ChartsView />}
      </main>
    </SessionContext.Provider>
  );
}
