/** The channels view: ingress URLs to give providers, their options, create and delete. */
import { useEffect, useState } from 'preact/hooks';
import { ConfirmButton } from './confirm-button.tsx';
import { CopyButton } from './copy-button.tsx';
import { CreateChannel } from './create-channel.tsx';
import { errorText } from './format.ts';
import type { Channel } from './model.ts';
import { useSession } from './session.ts';

function modeText(c: Channel): string {
  return c.mode === 'sync' && c.timeoutMs !== null ? `sync (${c.timeoutMs} ms)` : c.mode;
}

export function ChannelsView() {
  const { api, channels, reloadChannels } = useSession();
  const [note, setNote] = useState<string | null>(null);

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
        <table class="channels">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Ingress URL</th>
              <th scope="col">Verification</th>
              <th scope="col">Mode</th>
              <th scope="col">Ordered</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {channels.map((c) => (
              <tr key={c.id} data-channel-id={c.id}>
                <th scope="row">{c.name}</th>
                <td class="url">
                  <code>{c.ingressUrl}</code>{' '}
                  <CopyButton text={c.ingressUrl} label={`Copy the ingress URL of ${c.name}`} />
                </td>
                <td>{c.provider ?? <span class="muted">none</span>}</td>
                <td>{modeText(c)}</td>
                <td>{c.ordered ? 'yes' : 'no'}</td>
                <td>
                  <ConfirmButton
                    label="Delete"
                    subject={c.name}
                    question={`Delete channel ${c.name}? Its ingress URL stops working.`}
                    confirmLabel="Yes, delete"
                    onConfirm={() => remove(c)}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <CreateChannel
        onCreated={(c) => {
          setNote(`Channel ${c.name} created: give its ingress URL to the provider.`);
          void reloadChannels();
        }}
      />
    </section>
  );
}
