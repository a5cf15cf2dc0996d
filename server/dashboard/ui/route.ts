/**
 * Which view is shown, kept in the URL fragment (`#/events`, `#/event/<id>`, `#/agents`,
 * `#/channels`, `#/charts`), so that links, Back and reload work and nothing reaches the server.
 */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { view: 'events' }
  | { view: 'event'; id: string }
  | { view: 'agents' }
  | { view: 'channels' }
  | { view: 'charts' };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/');
  if (parts[0] === 'event' && parts[1]) return { view: 'event', id: decodeURIComponent(parts[1]) };
  if (parts[0] === 'agents') return { view: 'agents' };
  if (parts[0] === 'channels') return { view: 'channels' };
  if (parts[0] === 'charts') return { view: 'charts' };
  return { view: 'events' };
}

export function href(route: Route): string {
  return route.view === 'event' ? `#/event/${encodeURIComponent(route.id)}` : `#/${route.view}`;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
