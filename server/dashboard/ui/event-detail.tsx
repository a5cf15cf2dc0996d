/**
 * One event: request line, why it waits, metadata, headers, body and attempts, kept live;
 * replay (where the relay allows it), copy as curl, download the body.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { AttemptsTimeline } from './attempts.tsx';
import { base64ToBytes } from './body-format.ts';
import { BodyView } from './body-view.tsx';
import { CopyButton } from './copy-button.tsx';
import { bodyFileName, curlCommand, inlineBodyText } from './curl.ts';
import { requestLine } from './events-table.tsx';
import { errorText, formatBytes, formatTime } from './format.ts';
import { HeadersTable } from './headers-table.tsx';
import { canReplay, type Agent, type EventDetail, type EventView } from './model.ts';
import { href } from './route.ts';
import { channelName, useLiveEvents, useSession } from './session.ts';
import { StatusBadge } from './status-badge.tsx';

/** The delivery state of a summary, laid over the detail (headers and body never change). */
function withState(detail: EventDetail, e: EventView): EventDetail {
  return {
    ...detail,
    status: e.status,
    attemptCount: e.attemptCount,
    nextAttemptAt: e.nextAttemptAt,
    reason: e.reason,
    waiting: e.waiting,
    attempts: e.attempts,
  };
}

export function EventDetailView(props: { id: string }) {
  const { api, channels } = useSession();
  const [event, setEvent] = useState<EventDetail | null>(null);
  const [agents, setAgents] = useState<Agent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [replaying, setReplaying] = useState(false);

  useEffect(() => {
    let live = true;
    api.event(props.id).then(
      (e) => live && setEvent(e),
      (err: unknown) => live && setError(`Could not load event ${props.id}: ${errorText(err)}`),
    );
    api.agents().then(
      (a) => live && setAgents(a),
      () => undefined, // attempts then name agents by id
    );
    return () => {
      live = false;
    };
  }, [api, props.id]);

  useLiveEvents((e) => {
    if (e.id === props.id) setEvent((d) => (d ? withState(d, e) : d));
  });

  const replay = async () => {
    setReplaying(true);
    setNote(null);
    try {
      const e = await api.replay(props.id);
      setEvent((d) => (d ? withState(d, e) : d));
      setNote('Queued again for delivery, with the same event id.');
    } catch (err) {
      setNote(`Replay failed: ${errorText(err)}`);
    } finally {
      setReplaying(false);
    }
  };

  const contentType =
    event?.headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1] ?? '';
  const bytes = useMemo(() => {
    try {
      return event ? base64ToBytes(event.body) : null;
    } catch {
      return null; // BodyView says the body could not be decoded
    }
  }, [event?.body]);
  const fileName = bodyFileName(props.id, contentType);
  // Method, URL, headers and body never change: built once, not on each live update.
  const curl = useMemo(
    () =>
      event && bytes
        ? curlCommand({
            method: event.method,
            url: event.originalUrl,
            headers: event.headers,
            bodyText: inlineBodyText(bytes),
            bodyBytes: bytes.length,
            bodyFile: fileName,
          })
        : '',
    [bytes, event?.method, event?.originalUrl, event?.headers, fileName],
  );
  const download = () => {
    if (!bytes) return;
    // A blob URL of this origin, saved as a file: the browser never renders the bytes.
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = fileName;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  const replayed = event?.attempts.some((a) => a.replay > 0) ?? false;
  return (
    <section aria-labelledby="event-heading">
      <p>
        <a href={href({ view: 'events' })}>← All events</a>
      </p>
      <h2 id="event-heading" tabIndex={-1}>
        Event <code>{props.id}</code>
      </h2>
      {event && (
        <p class="request-line">
          <code>{requestLine(event)}</code>
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!event && !error && <p class="muted">Loading…</p>}
      {event && (
        <>
          {event.waiting && (
            <p class="waiting" data-reason={event.waiting.reason}>
              <strong>Waiting:</strong> {event.waiting.message}
              {event.waiting.blockedBy && (
                <>
                  {' '}
                  (
                  <a href={href({ view: 'event', id: event.waiting.blockedBy })}>
                    open {event.waiting.blockedBy}
                  </a>
                  )
                </>
              )}
            </p>
          )}
          <div class="actions">
            {canReplay(event.status) && (
              <button type="button" class="primary" onClick={replay} disabled={replaying}>
                Replay this event
              </button>
            )}
            {event.status !== 'rejected' && (
              <span class="copy-curl">
                <CopyButton text={curl} label="Copy as curl" visibleLabel="Copy as curl" />
              </span>
            )}
            {bytes && bytes.length > 0 && (
              <button type="button" onClick={download}>
                Download body
              </button>
            )}
            <p class="note" role="status">
              {note}
            </p>
          </div>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <StatusBadge status={event.status} />
              {event.reason && <span class="muted"> {event.reason}</span>}
            </dd>
            <dt>Channel</dt>
            <dd>{channelName(channels, event.channelId)}</dd>
            <dt>Method</dt>
            <dd>{event.method}</dd>
            <dt>Path</dt>
            <dd>
              <code>{event.path || '/'}</code>
            </dd>
            <dt>Query</dt>
            <dd>{event.query ? <code>{event.query}</code> : <span class="muted">none</span>}</dd>
            <dt>Received</dt>
            <dd>
              <time dateTime={event.receivedAt ?? undefined}>{formatTime(event.receivedAt)}</time>
            </dd>
            <dt>Next attempt</dt>
            <dd>{event.nextAttemptAt ? formatTime(event.nextAttemptAt) : '—'}</dd>
            <dt>{replayed ? 'Attempts since the last replay' : 'Attempts counted'}</dt>
            <dd>{event.attemptCount}</dd>
            <dt>Size</dt>
            <dd>{formatBytes(event.size)}</dd>
            <dt>Original URL</dt>
            <dd>
              <code>{event.originalUrl}</code>
            </dd>
            <dt>From</dt>
            <dd>{event.remoteAddress}</dd>
          </dl>
          <AttemptsTimeline attempts={event.attempts} agents={agents} />
          <HeadersTable headers={event.headers} />
          <BodyView base64={event.body} contentType={contentType} />
        </>
      )}
    </section>
  );
}
