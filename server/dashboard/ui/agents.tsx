/** The agents view: who is connected, what they do; add, change channels, pair again, revoke. */
import { Fragment } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { AddAgent } from './add-agent.tsx';
import { AgentChannelsForm } from './agent-channels.tsx';
import { ConfirmButton } from './confirm-button.tsx';
import { errorText, formatAgo, formatTime } from './format.ts';
import type { Agent, NewAgent } from './model.ts';
import { PairingNotice } from './pairing-notice.tsx';
import { channelName, useSession } from './session.ts';

/** Agents have no stream of their own: the list is polled while it is shown. */
const POLL_MS = 5_000;
const COLUMNS = 7;

export function AgentsView() {
  const { api, channels } = useSession();
  const [agents, setAgents] = useState<Agent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [code, setCode] = useState<NewAgent | null>(null);

  const load = useCallback(async () => {
    try {
      setAgents(await api.agents());
      setError(null);
    } catch (err) {
      setError(`Could not load agents: ${errorText(err)}`);
    }
  }, [api]);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), POLL_MS);
    return () => clearInterval(timer);
  }, [load]);

  const revoke = async (a: Agent) => {
    try {
      await api.revokeAgent(a.id);
      setNote(`Agent ${a.name} revoked; its tunnels were closed.`);
    } catch (err) {
      setNote(`Could not revoke ${a.name}: ${errorText(err)}`);
    }
    await load();
  };

  const newCode = async (a: Agent) => {
    setNote(null);
    try {
      setCode(await api.newPairingCode(a.id));
    } catch (err) {
      setNote(`Could not issue a pairing code for ${a.name}: ${errorText(err)}`);
    }
  };

  return (
    <section aria-labelledby="agents-heading">
      <h2 id="agents-heading" tabIndex={-1}>
        Agents
      </h2>
      <p class="note" role="status">
        {note}
      </p>
      {code && (
        <PairingNotice
          added={code}
          channels={channels}
          again={code.agent.paired}
          onDone={() => setCode(null)}
        />
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {agents === null && !error && <p class="muted">Loading…</p>}
      {agents?.length === 0 && <p class="empty">No agents yet: add one below.</p>}
      {agents && agents.length > 0 && (
        <table class="agents cards">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Connected</th>
              <th scope="col">Last seen</th>
              <th scope="col">Version</th>
              <th scope="col" class="num">
                In flight
              </th>
              <th scope="col">Channels</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((a) => (
              <Fragment key={a.id}>
                <tr data-agent-id={a.id}>
                  <th scope="row">
                    {a.name}
                    <div class="muted small-text">{a.id}</div>
                  </th>
                  <td data-label="Connected">
                    {a.connected ? (
                      <span class="badge badge-delivered">connected</span>
                    ) : (
                      <span class="badge badge-idle">{a.paired ? 'offline' : 'not paired'}</span>
                    )}
                  </td>
                  <td data-label="Last seen">
                    <time dateTime={a.lastSeenAt ?? undefined} title={formatTime(a.lastSeenAt)}>
                      {a.connected ? 'now' : formatAgo(a.lastSeenAt)}
                    </time>
                  </td>
                  <td data-label="Version">{a.version ?? '—'}</td>
                  <td class="num" data-label="In flight">
                    {a.inFlight}
                  </td>
                  <td data-label="Channels">
                    {a.channels.map((id) => channelName(channels, id)).join(', ')}
                  </td>
                  <td class="row-actions">
                    <button
                      type="button"
                      aria-expanded={editing === a.id}
                      aria-label={`Change the channels of ${a.name}`}
                      onClick={() => setEditing(editing === a.id ? null : a.id)}
                    >
                      Channels
                    </button>{' '}
                    <button
                      type="button"
                      aria-label={`New pairing code for ${a.name}`}
                      onClick={() => void newCode(a)}
                    >
                      Pairing code
                    </button>{' '}
                    <ConfirmButton
                      label="Revoke"
                      subject={a.name}
                      question={`Revoke agent ${a.name}?`}
                      confirmLabel="Yes, revoke"
                      onConfirm={() => revoke(a)}
                    />
                  </td>
                </tr>
                {editing === a.id && (
                  <tr class="edit-row">
                    <td colSpan={COLUMNS}>
                      <AgentChannelsForm
                        agent={a}
                        onCancel={() => setEditing(null)}
                        onDone={(n) => {
                          setNote(n);
                          setEditing(null);
                          void load();
                        }}
                      />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      <AddAgent onAdded={() => void load()} />
    </section>
  );
}
