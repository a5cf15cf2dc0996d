/**
 * An incremental parser of the text/event-stream format, following the HTML spec's event
 * stream interpretation (comments, `event:`, multi-line `data:`, CRLF, CR or LF line ends):
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 */

export interface SseMessage {
  event: string;
  data: string;
}

/** An incremental parser: feed it text as it arrives, it calls `onMessage` per event. */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  readonly #onMessage: (m: SseMessage) => void;

  constructor(onMessage: (m: SseMessage) => void) {
    this.#onMessage = onMessage;
  }

  push(text: string): void {
    this.#buffer += text;
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      // A lone '\r' at the end may be the first half of '\r\n': wait for more.
      if (end < 0 || (end === this.#buffer.length - 1 && this.#buffer.endsWith('\r'))) return;
      const line = this.#buffer.slice(0, end);
      const eol = this.#buffer.startsWith('\r\n', end) ? 2 : 1;
      this.#buffer = this.#buffer.slice(end + eol);
      this.#line(line);
    }
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#data.length > 0) {
        this.#onMessage({ event: this.#event || 'message', data: this.#data.join('\n') });
      }
      this.#event = '';
      this.#data = [];
      return;
    }
    if (line.startsWith(':')) return; // comment (the relay's keepalives)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
  }
}
