/** A one-time pairing code, shown once, with the command that uses it on the agent's host. */
import { CopyButton } from './copy-button.tsx';
import { formatTime } from './format.ts';
import type { Channel, NewAgent } from './model.ts';

/** The relay's public URL: from the answer, else what ingress URLs start with, else this page. */
export function relayUrlOf(added: NewAgent, channels: Channel[] | null): string {
  if (added.relayUrl) return added.relayUrl;
  const granted = channels?.find((c) => added.agent.channels.includes(c.id));
  return granted?.ingressUrl.replace(/\/h\/[^/]+$/, '') ?? location.origin;
}

export function PairingNotice(props: {
  added: NewAgent;
  channels: Channel[] | null;
  /** A new code for an agent that was paired before: its host may hold the old identity. */
  again: boolean;
  onDone: () => void;
}) {
  const { added } = props;
  const command =
    `npm run agent -- pair --relay ${relayUrlOf(added, props.channels)} ` +
    `--code ${added.pairingCode} --state-dir ./agent-state`;
  return (
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
      <p>On the agent's host, in a Postern checkout:</p>
      <pre>{command}</pre>
      <p>
        <CopyButton text={command} label="Copy the pair command" />
      </p>
      <p class="hint">
        Then run the agent with the same <code>--state-dir</code>.
      </p>
      {props.again && (
        <p class="hint">
          Pairing again replaces the agent's key: its current tunnels close when the new key is
          paired. If the state dir still holds the old identity, add <code>--force</code>.
        </p>
      )}
      <button type="button" class="small" onClick={props.onDone}>
        Done
      </button>
    </div>
  );
}
