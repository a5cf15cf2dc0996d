/** The "add agent" form: a name and the channels it may serve; shows the one-time pairing code. */
import { useState } from 'preact/hooks';
import { CopyButton } from './copy-button.tsx';
import { errorText, formatTime } from './format.ts';
import type { NewAgent } from './model.ts';
import { useSession } from './session.ts';

export function AddAgent(props: { onAdded: () => void }) {
  const { api, channels } = useSession();
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<NewAgent | null>(null);

  const toggle = (id: string, on: boolean) => {
    const next = new Set(chosen);
    if (on) next.add(id);
    else next.delete(id);
    setChosen(next);
  };

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

  // The relay's public URL is what its ingress URLs start with; this page's origin otherwise.
  const granted = channels?.find((c) => added?.agent.channels.includes(c.id));
  const relayUrl = granted?.ingressUrl.replace(/\/h\/[^/]+$/, '') ?? location.origin;
  const pairCommand = added
    ? `npm run agent -- pair --relay ${relayUrl} --code ${added.pairingCode}`
    : '';
  return (
    <section aria-labelledby="add-agent-heading" class="panel">
      <h3 id="add-agent-heading">Add agent</h3>
      {added && (
        <div class="pairing" role="status">
          <p>
            Pairing code for <strong>{added.agent.name}</strong>, shown only once, valid until{' '}
            {formatTime(added.expiresAt)}:
          </p>
          <p>
            <code class="code" data-testid="pairing-code">
              {added.pairingCode}
            </code>{' '}
            <CopyButton text={added.pairingCode} label="Copy pairing code" />
          </p>
          <p>On the agent's host:</p>
          <pre>{pairCommand}</pre>
          <button type="button" class="small" onClick={() => setAdded(null)}>
            Done
          </button>
        </div>
      )}
      <form onSubmit={submit} class="stack">
        <label for="agent-name">Name</label>
        <input
          id="agent-name"
          value={name}
          maxLength={64}
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <fieldset>
          <legend>Channels it may deliver</legend>
          {(channels ?? []).length === 0 && <p class="muted">Create a channel first.</p>}
          {(channels ?? []).map((c) => (
            <label key={c.id} class="check">
              <input
                type="checkbox"
                checked={chosen.has(c.id)}
                onChange={(e) => toggle(c.id, e.currentTarget.checked)}
              />{' '}
              {c.name}
            </label>
          ))}
        </fieldset>
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
