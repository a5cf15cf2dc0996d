/** The events table: one row per event, newest first; each row links to the event's detail. */
import { formatBytes, formatTime } from './format.ts';
import type { Channel, EventView } from './model.ts';
import { href } from './route.ts';
import { channelName } from './session.ts';
import { StatusBadge } from './status-badge.tsx';

export function requestLine(e: Pick<EventView, 'method' | 'path' | 'query'>): string {
  return `${e.method} ${e.path || '/'}${e.query ? `?${e.query}` : ''}`;
}

export function EventsTable(props: {
  rows: EventView[];
  channels: Channel[] | null;
  /** Ids that arrived live, highlighted once. */
  fresh: ReadonlySet<string>;
}) {
  return (
    <table class="events cards">
      <caption class="visually-hidden">Events, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Received</th>
          <th scope="col">Channel</th>
          <th scope="col">Request</th>
          <th scope="col">Status</th>
          <th scope="col" class="num">
            Attempts
          </th>
          <th scope="col" class="num">
            Size
          </th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map((e) => (
          <tr key={e.id} data-event-id={e.id} class={props.fresh.has(e.id) ? 'fresh' : undefined}>
            <td data-label="Received">
              <time dateTime={e.receivedAt ?? undefined}>{formatTime(e.receivedAt)}</time>
            </td>
            <td data-label="Channel">{channelName(props.channels, e.channelId)}</td>
            <td class="request" data-label="Request">
              <a href={href({ view: 'event', id: e.id })} title={`Open event ${e.id}`}>
                {requestLine(e)}
              </a>
            </td>
            <td data-label="Status">
              <StatusBadge status={e.status} />
              {e.reason && <span class="muted"> {e.reason}</span>}
              {e.waiting && <div class="waiting-line muted">{e.waiting.message}</div>}
            </td>
            <td class="num" data-label="Attempts">
              {e.attemptCount}
            </td>
            <td class="num" data-label="Size">
              {formatBytes(e.size)}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
