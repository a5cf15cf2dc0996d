/**
 * Server-Sent Events over fetch(). EventSource cannot send an Authorization header, and the
 * admin token must never go in a URL (logs, history, Referer), so the stream is read by hand.
 */
import { SseParser, type SseMessage } from './sse-parser.ts';

export class StreamRefused extends Error {
  override name = 'StreamRefused';
  constructor(readonly status: number) {
    super(`the relay refused the event stream (HTTP ${status})`);
  }
}

/**
 * Opens `url` with the token, calls `onOpen` once the relay accepted, then `onMessage` per
 * event until the stream ends (resolves) or fails (rejects). Abort with `signal`.
 */
export async function readEventStream(opts: {
  url: string;
  token: string;
  signal: AbortSignal;
  onOpen: () => void;
  onMessage: (m: SseMessage) => void;
}): Promise<void> {
  const res = await fetch(opts.url, {
    headers: { authorization: `Bearer ${opts.token}`, accept: 'text/event-stream' },
    cache: 'no-store',
    signal: opts.signal,
  });
  if (!res.ok || !res.body) throw new StreamRefused(res.status);
  opts.onOpen();
  const parser = new SseParser(opts.onMessage);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  } finally {
    reader.releaseLock();
  }
}
