/** Copies a text to the clipboard and says so. */
import { useState } from 'preact/hooks';

async function copy(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No async clipboard (plain http on a remote host): the old way, through a selection.
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'offscreen';
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

export function CopyButton(props: {
  text: string;
  label: string;
  /** The button's text; "Copy" by default. */
  visibleLabel?: string;
}) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  return (
    <>
      <button
        type="button"
        class={props.visibleLabel ? undefined : 'small'}
        aria-label={props.label}
        onClick={async () => {
          setState((await copy(props.text)) ? 'copied' : 'failed');
          setTimeout(() => setState('idle'), 2000);
        }}
      >
        {props.visibleLabel ?? 'Copy'}
      </button>
      <span class="copy-note" aria-live="polite">
        {state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed: select it' : ''}
      </span>
    </>
  );
}
