/**
 * The relay's copy of the control state (channels, agents, pairings), read on every request:
 * loaded from the store at start, replaced by each change made through this relay, and read
 * again when the store reports a change made elsewhere (another relay on a shared store).
 * Each new state is compared with the one it replaces (`onChange`), so that a relay reacts to
 * a change whichever relay made it (a revoked agent's tunnels close on every relay).
 */
import type { ControlState, Store } from './store/types.ts';

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
