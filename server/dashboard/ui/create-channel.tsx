/** The "create channel" form: a name, and optionally a GitHub webhook secret to verify with. */
import { useState } from 'preact/hooks';
import { errorText } from './format.ts';
import type { Channel } from './model.ts';
import { useSession } from './session.ts';

export function CreateChannel(props: { onCreated: (c: Channel) => void }) {
  const { api } = useSession();
  const [name, setName] = useState('');
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (name.trim() === '') return setError('Give the channel a name.');
    setBusy(true);
    setError(null);
    try {
      const created = await api.createChannel({
        name: name.trim(),
        ...(secret === '' ? {} : { githubSecret: secret }),
      });
      setName('');
      setSecret('');
      props.onCreated(created);
    } catch (err) {
      setError(`Could not create the channel: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="create-channel-heading" class="panel">
      <h3 id="create-channel-heading">Create channel</h3>
      <form onSubmit={submit} class="stack">
        <label for="channel-name">Name</label>
        <input
          id="channel-name"
          value={name}
          maxLength={64}
          aria-describedby="channel-name-hint"
          onInput={(e) => setName(e.currentTarget.value)}
        />
        <span id="channel-name-hint" class="hint">
          Letters, digits, ".", "_" and "-".
        </span>
        <label for="channel-secret">GitHub webhook secret (optional)</label>
        <input
          id="channel-secret"
          type="password"
          autocomplete="off"
          value={secret}
          aria-describedby="channel-secret-hint"
          onInput={(e) => setSecret(e.currentTarget.value)}
        />
        <span id="channel-secret-hint" class="hint">
          With a secret, requests without a valid X-Hub-Signature-256 are refused at the relay.
        </span>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Create channel
        </button>
      </form>
    </section>
  );
}
