/**
 * An event's delivery attempts, oldest first: when, by which agent, how it went, and the app's
 * answer (status, headers, the start of the body, shown as text, never as HTML). Attempts made
 * after a replay carry its number.
 */
import { Fragment } from 'preact';
import { BodyView } from './body-view.tsx';
import { formatDuration, formatTime } from './format.ts';
import { HeadersTable } from './headers-table.tsx';
import type { Agent, Attempt, AttemptResponse } from './model.ts';
import { StatusBadge } from './status-badge.tsx';

const COLUMNS = 7;

function ResponseView(props: { response: AttemptResponse; status: number | null; n: number }) {
  const { response } = props;
  const contentType =
    response.headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1] ?? '';
  return (
    <details class="response" data-attempt={props.n}>
      <summary>
        The app's answer{props.status === null ? '' : ` (HTTP ${props.status})`}:{' '}
        {response.headers.length} header{response.headers.length === 1 ? '' : 's'},{' '}
        {response.bodyBytes} byte{response.bodyBytes === 1 ? '' : 's'} of body
        {response.truncated ? ', only the start kept' : ''}
      </summary>
      <HeadersTable
        headers={response.headers}
        title="Response headers"
        id={`response-headers-${props.n}`}
      />
      <BodyView
        base64={response.body}
        contentType={contentType}
        title="Response body"
        id={`response-body-${props.n}`}
        note={
          response.truncated
            ? `The first bytes of ${response.bodyBytes} read by the agent (the relay keeps at most 2048 bytes of body and 8192 of headers).`
            : null
        }
      />
    </details>
  );
}

export function AttemptsTimeline(props: { attempts: Attempt[]; agents: Agent[] | null }) {
  const agentName = (id: string) => props.agents?.find((a) => a.id === id)?.name ?? id;
  const replays = props.attempts.some((a) => a.replay > 0);
  return (
    <section aria-labelledby="attempts-heading">
      <h3 id="attempts-heading">Attempts ({props.attempts.length})</h3>
      {replays && (
        <p class="hint">Attempts made after a replay are marked with the replay's number.</p>
      )}
      {props.attempts.length === 0 ? (
        <p class="muted">No attempt yet.</p>
      ) : (
        <div class="scroll-x">
          <table class="attempts cards">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">At</th>
                <th scope="col">Agent</th>
                <th scope="col">Outcome</th>
                <th scope="col" class="num">
                  HTTP status
                </th>
                <th scope="col" class="num">
                  Duration
                </th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {props.attempts.map((a, i) => (
                <Fragment key={`${a.at ?? ''}-${i}`}>
                  <tr data-replay={a.replay}>
                    <td data-label="Attempt">
                      {i + 1}
                      {a.replay > 0 && (
                        <span class="badge badge-replay" title="made after this replay">
                          replay {a.replay}
                        </span>
                      )}
                    </td>
                    <td data-label="At">
                      <time dateTime={a.at ?? undefined}>{formatTime(a.at)}</time>
                    </td>
                    <td data-label="Agent">{agentName(a.agentId)}</td>
                    <td data-label="Outcome">
                      <StatusBadge status={a.outcome} />
                    </td>
                    <td class="num" data-label="HTTP status">
                      {a.status ?? '—'}
                    </td>
                    <td class="num" data-label="Duration">
                      {formatDuration(a.durationMs)}
                    </td>
                    {a.error !== null && (
                      <td class="error-text" data-label="Error">
                        {a.error}
                      </td>
                    )}
                    {a.error === null && <td class="no-error" />}
                  </tr>
                  {a.response && (
                    <tr class="response-row">
                      <td colSpan={COLUMNS}>
                        <ResponseView response={a.response} status={a.status} n={i + 1} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
