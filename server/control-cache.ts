/**
 * The relay's copy of the control state (channels, agents, pairings), read on every request:
 * loaded from the store at start, replaced by each change made through this relay, and read
 * again when the store reports a change made elsewhere (another relay on a shared store).
 * Each new state is compared with the one it replaces (`onChange`), so that a relay reacts to
 * a change whichever relay made it (a revoked agent's tunnels close on every relay).
 */
import type { ControlState, Store } from './store/types.ts';

/** Reads asked for by `fresh` start at most this often (a flood of unknown ids costs little). */
const FRESH_GAP_MS = 100;

export class ControlCache {
  readonly #store: Store;
  #state: ControlState | null = null;
  /** Orders results: a state read after (or committed after) another wins over it. */
  #seq = 0;
  #appliedSeq = -1;
  #refreshing = false;
  #refreshAgain = false;
  #onError: (err: unknown) => void;
  #onChange: (before: ControlState, after: ControlState) => void;
  /** A read asked for by `fresh` that has not started yet: later askers share it. */
  #nextRead: Promise<void> | null = null;
  #lastReadAt = 0;

  constructor(
    store: Store,
    onError: (err: unknown) => void,
    onChange: (before: ControlState, after: ControlState) => void = () => undefined,
  ) {
    this.#store = store;
    this.#onError = onError;
    this.#onChange = onChange;
  }

  async load(): Promise<void> {
    const seq = ++this.#seq;
    this.#apply(seq, await this.#store.readControl());
  }

  /**
   * Resolves once the state was read from the store after this call: for an id not known
   * here, which another relay may have created a moment ago (its change is reported a little
   * later). Callers share reads, which start at most every FRESH_GAP_MS; never rejects. A store
   * no other relay changes needs no read.
   */
  fresh(): Promise<void> {
    if (!this.#store.shared) return Promise.resolve(); // every change is made here
    this.#nextRead ??= new Promise<void>((resolve) => {
      const wait = Math.max(0, this.#lastReadAt + FRESH_GAP_MS - Date.now());
      setTimeout(() => {
        this.#nextRead = null;
        this.#lastReadAt = Date.now();
        const seq = ++this.#seq;
        this.#store
          .readControl()
          .then((state) => this.#apply(seq, state), this.#onError)
          .finally(resolve);
      }, wait).unref();
    });
    return this.#nextRead;
  }

  get state(): Readonly<ControlState> {
    if (!this.#state) throw new Error('the control state is read before it is loaded');
    return this.#state;
  }

  /** Applies a change through the store (durable, serialized with every other relay's). */
  async update(change: (state: ControlState) => void): Promise<void> {
    const next = await this.#store.updateControl(change);
    this.#apply(++this.#seq, next);
  }

  /** The store reports a change: read the state again (one read at a time, the last wins). */
  changed(): void {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    const seq = ++this.#seq;
    this.#store
      .readControl()
      .then((state) => this.#apply(seq, state), this.#onError)
      .finally(() => {
        this.#refreshing = false;
        if (this.#refreshAgain) {
          this.#refreshAgain = false;
          this.changed();
        }
      });
  }

  #apply(seq: number, state: ControlState): void {
    if (seq <= this.#appliedSeq) return;
    this.#appliedSeq = seq;
    const before = this.#state;
    this.#state = state;
    if (!before) return;
    try {
      this.#onChange(before, state);
    } catch (err) {
      this.#onError(err);
    }
  }
}
