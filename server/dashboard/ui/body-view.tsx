/** A body, shown as pretty JSON, text or a hex dump (see body-format.ts); text, never HTML. */
import type { ComponentChildren } from 'preact';
import { useMemo } from 'preact/hooks';
import { base64ToBytes, viewBody } from './body-format.ts';
import { formatBytes } from './format.ts';

const KIND_LABEL = { empty: 'empty', json: 'JSON', text: 'text', binary: 'binary, hex dump' };

export function BodyView(props: {
  base64: string;
  contentType: string;
  title?: string;
  /** The heading's id (unique on the page). */
  id?: string;
  /** A line under the body, e.g. that only its start was kept. */
  note?: string | null;
  /** Actions beside the heading (copy, download). */
  actions?: ComponentChildren;
}) {
  // A body the relay sent in a form the page cannot decode is said so, not a broken page.
  const decoded = useMemo(() => {
    try {
      return base64ToBytes(props.base64);
    } catch {
      return null;
    }
  }, [props.base64]);
  const bytes = decoded ?? new Uint8Array();
  const view = useMemo(() => viewBody(bytes, props.contentType), [bytes, props.contentType]);
  const truncated = view.kind === 'text' || view.kind === 'binary' ? view.truncated : false;
  const id = props.id ?? 'body-heading';
  const title = props.title ?? 'Body';
  return (
    <section aria-labelledby={id}>
      <h3 id={id}>
        {title}{' '}
        <span class="muted">
          ({formatBytes(bytes.length)}, {KIND_LABEL[view.kind]})
        </span>
      </h3>
      {props.actions && <p class="body-actions">{props.actions}</p>}
      {decoded === null && <p class="error">The body could not be decoded (not base64).</p>}
      {decoded !== null && view.kind === 'empty' && <p class="muted">No body.</p>}
      {view.kind !== 'empty' && (
        <pre class={`body body-${view.kind}`} tabIndex={0} aria-label={title} data-kind={view.kind}>
          {view.kind === 'binary' ? view.dump : view.text}
        </pre>
      )}
      {truncated && <p class="muted">Only the beginning of the body is shown.</p>}
      {props.note && <p class="muted">{props.note}</p>}
    </section>
  );
}
