/** The "add agent" form: a name and the channels it may serve; shows the one-time pairing code. */
import { useState } from 'preact/hooks';
import { ChannelPicker } from './channel-picker.tsx';
import { errorText } from './format.ts';
import type { NewAgent } from './model.ts';
import { PairingNotice } from './pairing-notice.tsx';
import { useSession } from './session.ts';

export function AddAgent(props: { onAdded: () => void }) {
  const { api, channels } = useSession();
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<NewAgent | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (name.trim() === '') return setError('Give the agent a name.');
    if (chosen.size === 0) return setError('Choose at least one channel.');
    setBusy(true);
    setError(null);
    try {
      setAdded(await api.addAgent(name.trim(), [...chosen]));
      setName('');
      setChosen(new Set());
      props.onAdded();
    } catch (err) {
      setError(`Could not add the agent: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="add-agent-heading" class="panel">
      <h3 id="add-agent-heading">Add agent</h3>
      {added && (
        <PairingNotice
          added={added}
          channels={channels}
          again={false}
          onDone={() => setAdded(null)}
        />
      )}
      <form onSubmit={submit} class="stack">
        <label for="agent-name">Name</label>
        <input
          id="agent-name"
          value={name}
          maxLength={64}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <ChannelPicker
          legend="Channels it may deliver"
          chosen={chosen}
          onChange={setChosen}
          whenNone="Create a channel first."
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Add agent
        </button>
      </form>
    </section>
  );
}
