/**
 * Payloads (headers and body) of events not yet delivered, kept in memory up to a byte budget
 * so that dispatch seldom reads them back from disk. Past the budget, events are simply read
 * from the journal when their turn comes.
 */
import type { EventPayload } from './types.ts';

/** Rough heap cost of a cached payload: bytes plus object overhead (~64 B a header pair). */
function payloadBytes(p: EventPayload): number {
  let n = p.body.length + 512 + p.originalUrl.length + p.path.length + p.query.length;
  for (const [k, v] of p.headers) n += 64 + k.length + v.length;
  return n;
}

export class PayloadCache {
  readonly #limit: number;
  readonly #payloads = new Map<string, EventPayload>();
  #bytes = 0;

  constructor(limitBytes: number) {
    this.#limit = limitBytes;
  }

  get(id: string): EventPayload | undefined {
    return this.#payloads.get(id);
  }

  /** Keeps the payload if it fits the budget; otherwise it will be read from disk. */
  add(p: EventPayload): void {
    const size = payloadBytes(p);
    if (this.#bytes + size > this.#limit) return;
    this.#payloads.set(p.id, p);
    this.#bytes += size;
  }

  delete(id: string): void {
    const p = this.#payloads.get(id);
    if (!p) return;
    this.#payloads.delete(id);
    this.#bytes -= payloadBytes(p);
  }
}
