/** Changing the channels an agent is granted: one checkbox per channel. */
import { useState } from 'preact/hooks';
import { ChannelPicker } from './channel-picker.tsx';
import { errorText } from './format.ts';
import type { Agent } from './model.ts';
import { useSession } from './session.ts';

export function AgentChannelsForm(props: {
  agent: Agent;
  onDone: (note: string) => void;
  onCancel: () => void;
}) {
  const { api } = useSession();
  const { agent } = props;
  const [chosen, setChosen] = useState<ReadonlySet<string>>(() => new Set(agent.channels));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (chosen.size === 0) {
      return setError('Choose at least one channel (revoke the agent to remove it).');
    }
    setBusy(true);
    setError(null);
    try {
      const saved = await api.updateAgent(agent.id, [...chosen]);
      props.onDone(
        `Agent ${saved.name} may now deliver ${saved.channels.length} channel${saved.channels.length === 1 ? '' : 's'}; its sessions reconnect with the new grants.`,
      );
    } catch (err) {
      setError(`Could not change the channels: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form onSubmit={submit} class="stack" aria-label={`Channels of ${agent.name}`}>
      <ChannelPicker
        legend={`Channels ${agent.name} may deliver`}
        chosen={chosen}
        onChange={setChosen}
      />
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          Save channels
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
