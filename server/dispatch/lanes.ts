/**
 * The queue of an ordered channel: one FIFO ("lane") per ordering key. A lane's head is the
 * only event of that key that may be in flight or waiting for its retry; the events behind it
 * wait. Different keys move independently, so order is kept per key while keys run in
 * parallel. A channel without an ordering key has a single lane ("").
 */
import { Deque } from './queues.ts';

export class Lanes {
  readonly #lanes = new Map<string, Deque<string>>();
  /** Keys whose head may be offered now, in the order they became ready. */
  readonly #ready = new Deque<string>();
  readonly #queued = new Set<string>();
  /** Keys whose head is in flight, or waiting for its retry time. */
  readonly #busy = new Set<string>();

  /** A new (or replayed) event at the back of its key's lane. */
  push(key: string, id: string): void {
    let lane = this.#lanes.get(key);
    if (!lane) this.#lanes.set(key, (lane = new Deque()));
    lane.push(id);
    if (!this.#busy.has(key)) this.#markReady(key);
  }

  /** The first event of a key's lane. */
  head(key: string): string | undefined {
    return this.#lanes.get(key)?.peek();
  }

  /** The next key whose head may go; the key is busy until `release` or `done`. */
  take(): { key: string; id: string } | undefined {
    for (let key = this.#ready.shift(); key !== undefined; key = this.#ready.shift()) {
      this.#queued.delete(key);
      const head = this.#lanes.get(key)?.peek();
      if (head === undefined || this.#busy.has(key)) continue;
      this.#busy.add(key);
      return { key, id: head };
    }
    return undefined;
  }

  /** The key's head stays the head but may be offered again (its session ended, or it is due). */
  release(key: string): void {
    this.#busy.delete(key);
    if ((this.#lanes.get(key)?.length ?? 0) > 0) this.#markReady(key);
  }

  /** The event leaves its lane (delivered, failed, filtered, skipped): the next may go. */
  done(key: string, id: string): void {
    const lane = this.#lanes.get(key);
    if (!lane) return;
    if (lane.peek() === id) {
      lane.shift();
      this.#busy.delete(key);
    } else {
      // Not the head (an operator skipped an event further back): rebuild the lane without it.
      const rest = new Deque<string>();
      for (const x of lane) if (x !== id) rest.push(x);
      this.#lanes.set(key, rest);
    }
    if ((this.#lanes.get(key)?.length ?? 0) === 0) {
      this.#lanes.delete(key);
      this.#busy.delete(key);
    } else if (!this.#busy.has(key)) {
      this.#markReady(key);
    }
  }

  /** Every event id still in a lane, for forgetting a deleted channel. */
  *ids(): Iterable<string> {
    for (const lane of this.#lanes.values()) yield* lane;
  }

  #markReady(key: string): void {
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#ready.push(key);
  }
}
