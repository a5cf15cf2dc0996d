/**
 * A destructive action behind an inline confirmation: the first press asks, a second button
 * confirms. Focus moves to the confirming button; Escape or "Cancel" goes back.
 */
import { useEffect, useRef, useState } from 'preact/hooks';

export function ConfirmButton(props: {
  /** The button's text, e.g. "Revoke". */
  label: string;
  /** What it acts on, for its accessible name, e.g. "laptop" (read as "Revoke laptop"). */
  subject: string;
  /** What is about to happen, e.g. "Revoke agent laptop?". */
  question: string;
  /** The confirming button's text, e.g. "Yes, revoke". */
  confirmLabel: string;
  onConfirm: () => Promise<void>;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  const start = useRef<HTMLButtonElement>(null);
  const wasAsking = useRef(false);

  useEffect(() => {
    if (asking) confirm.current?.focus();
    else if (wasAsking.current) start.current?.focus();
    wasAsking.current = asking;
  }, [asking]);

  if (!asking) {
    return (
      <button
        type="button"
        class="danger"
        ref={start}
        aria-label={`${props.label} ${props.subject}`}
        onClick={() => setAsking(true)}
      >
        {props.label}
      </button>
    );
  }
  return (
    <span
      class="confirm"
      role="group"
      aria-label={props.question}
      onKeyDown={(e) => {
        if (e.key === 'Escape') setAsking(false);
      }}
    >
      <span>{props.question}</span>{' '}
      <button
        type="button"
        class="danger"
        ref={confirm}
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await props.onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        {props.confirmLabel}
      </button>{' '}
      <button type="button" onClick={() => setAsking(false)} disabled={busy}>
        Cancel
      </button>
    </span>
  );
}
