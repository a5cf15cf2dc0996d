/**
 * The queue of an ordered channel: one FIFO ("lane") per ordering key. A lane's head is the
 * only event of that key that may be in flight or waiting for its retry; the events behind it
 * wait. Different keys move independently, so order is kept per key while keys run in
 * parallel. A channel without an ordering key has a single lane ("").
 *
 * A key can also be held by events of its lane that are out of turn: in flight since before
 * the channel became ordered (or its settings changed). The lane offers nothing until each of
 * them is back.
 */
import { Deque } from './queues.ts';

export class Lanes {
  readonly #lanes = new Map<string, Deque<string>>();
  /** Keys whose head may be offered now, in the order they became ready. */
  readonly #ready = new Deque<string>();
  readonly #queued = new Set<string>();
  /** Keys whose head is in flight, or waiting for its retry time. */
  readonly #busy = new Set<string>();
  /** Key → events of that key out of turn (see `hold`). */
  readonly #holds = new Map<string, number>();

  /** A new (or replayed) event at the back of its key's lane. */
  push(key: string, id: string): void {
    let lane = this.#lanes.get(key);
    if (!lane) this.#lanes.set(key, (lane = new Deque()));
    lane.push(id);
    this.#offer(key);
  }

  /** Whether `take` may offer something (a cheap check: it may still find only stale keys). */
  get mayOffer(): boolean {
    return this.#ready.length > 0;
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
      if (head === undefined || this.#isBusy(key)) continue;
      this.#busy.add(key);
      return { key, id: head };
    }
    return undefined;
  }

  /** The key's head stays the head but may be offered again (its session ended, or it is due). */
  release(key: string): void {
    this.#busy.delete(key);
    this.#offer(key);
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
    } else {
      this.#offer(key);
    }
  }

  /** One more event of the key's lane is out of turn (in flight): the lane offers nothing. */
  hold(key: string): void {
    this.#holds.set(key, (this.#holds.get(key) ?? 0) + 1);
  }

  /** An event counted by `hold` is back (acknowledged or returned): the lane may move again. */
  unhold(key: string): void {
    const n = (this.#holds.get(key) ?? 0) - 1;
    if (n > 0) this.#holds.set(key, n);
    else this.#holds.delete(key);
    this.#offer(key);
  }

  /** Every event id still in a lane, for forgetting a deleted channel. */
  *ids(): Iterable<string> {
    for (const lane of this.#lanes.values()) yield* lane;
  }

  #isBusy(key: string): boolean {
    return this.#busy.has(key) || this.#holds.has(key);
  }

  /** Lists the key as ready when its lane has a head that may go. */
  #offer(key: string): void {
    if (this.#queued.has(key) || this.#isBusy(key)) return;
    if ((this.#lanes.get(key)?.length ?? 0) === 0) return;
    this.#queued.add(key);
    this.#ready.push(key);
  }
}
