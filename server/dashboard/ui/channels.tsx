/** The channels view: ingress URLs to give providers, their settings, create, edit and delete. */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { formatDelays } from './channel-draft.ts';
import { ChannelForm } from './channel-form.tsx';
import { ConfirmButton } from './confirm-button.tsx';
import { CopyButton } from './copy-button.tsx';
import { errorText } from './format.ts';
import type { Channel } from './model.ts';
import { useSession } from './session.ts';

function modeText(c: Channel): string {
  return c.mode === 'sync' && c.timeoutMs !== null ? `sync (${c.timeoutMs} ms)` : c.mode;
}

function orderText(c: Channel): string {
  if (!c.ordered) return 'no';
  const k = c.orderingKey;
  if (k === null) return 'yes';
  return 'header' in k ? `per header ${k.header}` : `per field ${k.jsonField}`;
}

export function ChannelsView() {
  const { api, channels, reloadChannels } = useSession();
  const [note, setNote] = useState<string | null>(null);
  const [editing, setEditing] = useState<string | null>(null);

  useEffect(() => {
    void reloadChannels();
  }, [reloadChannels]);

  const remove = async (c: Channel) => {
    try {
      await api.deleteChannel(c.id);
      setNote(`Channel ${c.name} deleted.`);
    } catch (err) {
      setNote(`Could not delete ${c.name}: ${errorText(err)}`);
    }
    await reloadChannels();
  };

  const done = (n: string) => {
    setNote(n);
    setEditing(null);
    void reloadChannels();
  };

  return (
    <section aria-labelledby="channels-heading">
      <h2 id="channels-heading" tabIndex={-1}>
        Channels
      </h2>
      <p class="note" role="status">
        {note}
      </p>
      {channels === null && <p class="muted">Loading…</p>}
      {channels?.length === 0 && <p class="empty">No channels yet: create one below.</p>}
      {channels && channels.length > 0 && (
        <table class="channels cards">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Ingress URL</th>
              <th scope="col">Verification</th>
              <th scope="col">Mode</th>
              <th scope="col">Retries</th>
              <th scope="col">Ordered</th>
              <th scope="col">Rate limit</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {channels.map((c) => (
              <Fragment key={c.id}>
                <tr data-channel-id={c.id}>
                  <th scope="row">{c.name}</th>
                  <td class="url" data-label="Ingress URL">
                    <code>{c.ingressUrl}</code>{' '}
                    <CopyButton text={c.ingressUrl} label={`Copy the ingress URL of ${c.name}`} />
                  </td>
                  <td data-label="Verification">{c.provider ?? <span class="muted">none</span>}</td>
                  <td data-label="Mode">{modeText(c)}</td>
                  <td data-label="Retries">
                    {c.retryDelaysMs === null
                      ? '—'
                      : c.retryDelaysMs.length === 0
                        ? 'none'
                        : formatDelays(c.retryDelaysMs)}
                  </td>
                  <td data-label="Ordered">{orderText(c)}</td>
                  <td data-label="Rate limit">
                    {c.rateLimit
                      ? `${c.rateLimit.perSecond}/s, burst ${c.rateLimit.burst}`
                      : 'none'}
                  </td>
                  <td class="row-actions">
                    <button
                      type="button"
                      aria-expanded={editing === c.id}
                      aria-label={`Edit ${c.name}`}
                      onClick={() => setEditing(editing === c.id ? null : c.id)}
                    >
                      Edit
                    </button>{' '}
                    <ConfirmButton
                      label="Delete"
                      subject={c.name}
                      question={`Delete channel ${c.name}? Its ingress URL stops working.`}
                      confirmLabel="Yes, delete"
                      onConfirm={() => remove(c)}
                    />
                  </td>
                </tr>
                {editing === c.id && (
                  <tr class="edit-row">
                    <td colSpan={8}>
                      <h3>Edit {c.name}</h3>
                      <ChannelForm
                        channel={c}
                        onDone={(_saved, n) => done(n)}
                        onCancel={() => setEditing(null)}
                      />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      <section aria-labelledby="create-channel-heading" class="panel">
        <h3 id="create-channel-heading">Create channel</h3>
        <ChannelForm channel={null} onDone={(_c, n) => done(n)} />
      </section>
    </section>
  );
}
