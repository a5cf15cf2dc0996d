/** An event's delivery attempts, oldest first: when, by which agent, and how it went. */
import { formatDuration, formatTime } from './format.ts';
import type { Agent, Attempt } from './model.ts';
import { StatusBadge } from './status-badge.tsx';

export function AttemptsTimeline(props: { attempts: Attempt[]; agents: Agent[] | null }) {
  const agentName = (id: string) => props.agents?.find((a) => a.id === id)?.name ?? id;
  return (
    <section aria-labelledby="attempts-heading">
      <h3 id="attempts-heading">Attempts ({props.attempts.length})</h3>
      {props.attempts.length === 0 ? (
        <p class="muted">No attempt yet.</p>
      ) : (
        <table class="attempts">
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
              <tr key={`${a.at ?? ''}-${i}`}>
                <td>{i + 1}</td>
                <td>
                  <time dateTime={a.at ?? undefined}>{formatTime(a.at)}</time>
                </td>
                <td>{agentName(a.agentId)}</td>
                <td>
                  <StatusBadge status={a.outcome} />
                </td>
                <td class="num">{a.status ?? '—'}</td>
                <td class="num">{formatDuration(a.durationMs)}</td>
                <td class="error-text">{a.error ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
