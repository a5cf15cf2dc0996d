/**
 * Creating or editing a channel: name, verification (every provider; secrets write-only), sync
 * response, retry schedule, ordering and rate limit. See channel-draft.ts for the request body.
 */
import { useState } from 'preact/hooks';
import { PROVIDERS, channelFields, draftOf, type ChannelDraft } from './channel-draft.ts';
import { errorText } from './format.ts';
import type { Channel } from './model.ts';
import { useSession } from './session.ts';

export function ChannelForm(props: {
  /** The channel to edit; null to create one. */
  channel: Channel | null;
  onDone: (c: Channel | null, note: string) => void;
  onCancel?: () => void;
}) {
  const { api } = useSession();
  const original = props.channel;
  const [d, setDraft] = useState<ChannelDraft>(() => draftOf(original));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (patch: Partial<ChannelDraft>) => setDraft({ ...d, ...patch });
  // Ids unique on the page: one form per channel may be open besides the create form.
  const p = original ? `edit-${original.id}` : 'new-channel';
  const id = (field: string) => `${p}-${field}`;

  const submit = async (e: Event) => {
    e.preventDefault();
    let fields;
    try {
      fields = channelFields(d, original);
    } catch (err) {
      return setError(errorText(err));
    }
    if (original && Object.keys(fields).length === 0) {
      return props.onDone(original, `Nothing to change on ${original.name}.`);
    }
    setBusy(true);
    setError(null);
    try {
      const saved = original
        ? await api.updateChannel(original.id, fields)
        : await api.createChannel(fields);
      if (!original) setDraft(draftOf(null));
      props.onDone(
        saved,
        original
          ? `Channel ${saved.name} saved.`
          : `Channel ${saved.name} created: give its ingress URL to the provider.`,
      );
    } catch (err) {
      setError(`Could not save the channel: ${errorText(err)}`);
    } finally {
      setBusy(false);
    }
  };

  const inputProps = (field: keyof ChannelDraft, hint: string | undefined) => ({
    id: id(field),
    autocomplete: 'off',
    spellcheck: false,
    value: String(d[field]),
    'aria-describedby': hint ? id(`${field}-hint`) : undefined,
    onInput: (e: { currentTarget: HTMLInputElement }) => set({ [field]: e.currentTarget.value }),
  });

  const text = (
    field: keyof ChannelDraft,
    label: string,
    opts: { hint?: string; secret?: boolean; inputMode?: 'numeric' } = {},
  ) => (
    <div class="field">
      <label for={id(field)}>{label}</label>
      {opts.secret ? (
        <input type="password" {...inputProps(field, opts.hint)} />
      ) : (
        <input type="text" inputMode={opts.inputMode} {...inputProps(field, opts.hint)} />
      )}
      {opts.hint && (
        <span id={id(`${field}-hint`)} class="hint">
          {opts.hint}
        </span>
      )}
    </div>
  );

  const verifyOpen = d.changeVerify;
  return (
    <form
      class="channel-form"
      onSubmit={submit}
      aria-label={original ? `Edit ${original.name}` : 'New channel'}
    >
      {text('name', 'Name', { hint: 'Letters, digits, ".", "_" and "-".' })}

      <fieldset>
        <legend>Verification</legend>
        {original && (
          <p class="hint">
            Now:{' '}
            {original.verify
              ? `${original.verify.provider}${original.verify.rotating ? ' (rotating: a previous secret is accepted too)' : ''}`
              : 'none'}
            . Secrets are never shown.
          </p>
        )}
        {original && (
          <label class="check">
            <input
              type="checkbox"
              checked={d.changeVerify}
              onChange={(e) => set({ changeVerify: e.currentTarget.checked })}
            />{' '}
            Change verification (give the secrets again)
          </label>
        )}
        {verifyOpen && (
          <>
            <div class="field">
              <label for={id('provider')}>Provider</label>
              <select
                id={id('provider')}
                value={d.provider}
                onChange={(e) => set({ provider: e.currentTarget.value })}
              >
                <option value="">None: accept any request</option>
                {PROVIDERS.map((pr) => (
                  <option key={pr.id} value={pr.id}>
                    {pr.label}
                  </option>
                ))}
              </select>
            </div>
            {d.provider !== '' && (
              <>
                {text('secret', 'Secret', { secret: true })}
                {text('previousSecret', 'Previous secret (optional)', {
                  secret: true,
                  hint: 'Accepted too while the provider moves to the new secret.',
                })}
              </>
            )}
            {d.provider === 'meta' && text('verifyToken', 'Verify token', { secret: true })}
            {d.provider === 'hmac' && (
              <>
                {text('header', 'Signature header', { hint: 'e.g. X-Signature' })}
                <div class="field">
                  <label for={id('algorithm')}>Algorithm</label>
                  <select
                    id={id('algorithm')}
                    value={d.algorithm}
                    onChange={(e) => set({ algorithm: e.currentTarget.value })}
                  >
                    <option value="sha1">sha1</option>
                    <option value="sha256">sha256</option>
                    <option value="sha512">sha512</option>
                  </select>
                </div>
                <div class="field">
                  <label for={id('encoding')}>Encoding</label>
                  <select
                    id={id('encoding')}
                    value={d.encoding}
                    onChange={(e) => set({ encoding: e.currentTarget.value })}
                  >
                    <option value="hex">hex</option>
                    <option value="base64">base64</option>
                  </select>
                </div>
                {text('prefix', 'Prefix (optional)', { hint: 'e.g. sha256=' })}
              </>
            )}
          </>
        )}
      </fieldset>

      <fieldset>
        <legend>Response to the provider</legend>
        <label class="check">
          <input
            type="radio"
            name={id('mode')}
            checked={d.mode === 'async'}
            onChange={() => set({ mode: 'async' })}
          />{' '}
          Async: answer 202 once stored
        </label>
        <label class="check">
          <input
            type="radio"
            name={id('mode')}
            checked={d.mode === 'sync'}
            onChange={() => set({ mode: 'sync' })}
          />{' '}
          Sync: return the app's own answer
        </label>
        {d.mode === 'sync' &&
          text('timeoutMs', 'Sync timeout (ms)', {
            inputMode: 'numeric',
            hint: '100 to 60000; then 202 and the event stays queued.',
          })}
      </fieldset>

      <fieldset>
        <legend>Delivery</legend>
        {text('retry', 'Retry delays', {
          hint: 'Waits before the 2nd, 3rd, … attempt, e.g. 5s, 5m, 30m, 2h. Empty: one attempt.',
        })}
        <label class="check">
          <input
            type="checkbox"
            checked={d.ordered}
            onChange={(e) => set({ ordered: e.currentTarget.checked })}
          />{' '}
          Ordered: one event at a time, in arrival order
        </label>
        {d.ordered && (
          <>
            <div class="field">
              <label for={id('keyKind')}>Ordering key</label>
              <select
                id={id('keyKind')}
                value={d.keyKind}
                onChange={(e) => set({ keyKind: e.currentTarget.value as ChannelDraft['keyKind'] })}
              >
                <option value="none">None: the whole channel in order</option>
                <option value="header">A request header</option>
                <option value="jsonField">A JSON body field</option>
              </select>
            </div>
            {d.keyKind !== 'none' &&
              text(
                'keyValue',
                d.keyKind === 'header' ? 'Header name' : 'JSON field (dotted path)',
                {
                  hint: 'Events of the same key go in order; keys run in parallel.',
                },
              )}
          </>
        )}
        {text('perSecond', 'Rate limit (requests per second)', {
          inputMode: 'numeric',
          hint: 'Empty: no limit. Beyond it ingress answers 429.',
        })}
        {d.perSecond.trim() !== '' &&
          text('burst', 'Burst', { inputMode: 'numeric', hint: 'Empty: the same as the rate.' })}
      </fieldset>

      <fieldset>
        <legend>Ingress</legend>
        {text('maxBodyBytes', 'Largest body (bytes)', {
          inputMode: 'numeric',
          hint: 'Up to 26214400 (25 MiB); larger requests get 413.',
        })}
        {text('methods', 'Methods', {
          hint: 'e.g. POST, GET; others get 405. Empty: the provider’s own, or any without verification.',
        })}
        {text('paths', 'Paths', {
          hint: 'After the ingress URL, e.g. /push, /github/*; "" is no suffix. Empty: any path.',
        })}
      </fieldset>

      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          {original ? 'Save changes' : 'Create channel'}
        </button>
        {props.onCancel && (
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}
