/** An event body, shown as pretty JSON, text or a hex dump (see body-format.ts). */
import { useMemo } from 'preact/hooks';
import { base64ToBytes, viewBody } from './body-format.ts';
import { formatBytes } from './format.ts';

const KIND_LABEL = { empty: 'empty', json: 'JSON', text: 'text', binary: 'binary, hex dump' };

export function BodyView(props: { base64: string; contentType: string }) {
  const bytes = useMemo(() => base64ToBytes(props.base64), [props.base64]);
  const view = useMemo(() => viewBody(bytes, props.contentType), [bytes, props.contentType]);
  const truncated = view.kind === 'text' || view.kind === 'binary' ? view.truncated : false;
  return (
    <section aria-labelledby="body-heading">
      <h3 id="body-heading">
        Body{' '}
        <span class="muted">
          ({formatBytes(bytes.length)}, {KIND_LABEL[view.kind]})
        </span>
      </h3>
      {view.kind === 'empty' && <p class="muted">No body.</p>}
      {view.kind !== 'empty' && (
        <pre
          class={`body body-${view.kind}`}
          tabIndex={0}
          aria-label="Event body"
          data-kind={view.kind}
        >
          {view.kind === 'binary' ? view.dump : view.text}
        </pre>
      )}
      {truncated && <p class="muted">Only the beginning of the body is shown.</p>}
    </section>
  );
}
