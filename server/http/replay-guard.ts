/**
 * Replay protection at ingress. A verified request whose signed content was already accepted
 * on the channel within the provider's window (see `ReplayKey`) is the same webhook again: it
 * is answered with the first event's id and neither stored nor delivered again.
 *
 * The store only knows keys whose event is appended, so identical requests in flight at once
 * are serialized here: the first holds the key until its append settles; the others wait and
 * answer with its id, or, if it could not be stored, the next one goes on in its place.
 */
import type { Store } from '../store/types.ts';
import type { ReplayKey } from '../verify/index.ts';

/** Either the id of the event this request repeats, or the right to store it. */
export type Claim =
  | { duplicateOf: string }
  | {
      duplicateOf?: undefined;
      /** Must be called once: with the stored event's id, or undefined if storing failed. */
      release(storedId: string | undefined): void;
    };

export class ReplayGuard {
  /** channel + key → the outcome of the request holding it (the stored id, or undefined). */
  readonly #pending = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly store: Pick<Store, 'findByDedupKey'>,
    private readonly now: () => number,
  ) {}

  /** How many keys are held by requests in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  async claim(channelId: string, replay: ReplayKey): Promise<Claim> {
    const slot = `${channelId} ${replay.key}`;
    for (;;) {
      const held = this.#pending.get(slot);
      if (held) {
        const id = await held;
        if (id !== undefined) return { duplicateOf: id };
        continue; // the holder failed to store it: take its place (or wait for whoever did)
      }
      let settle!: (id: string | undefined) => void;
      const outcome = new Promise<string | undefined>((resolve) => (settle = resolve));
      this.#pending.set(slot, outcome);
      let released = false;
      const release = (id: string | undefined): void => {
        if (released) return;
        released = true;
        this.#pending.delete(slot);
        settle(id);
      };
      let found: string | undefined;
      try {
        found = await this.store.findByDedupKey(
          channelId,
          replay.key,
          this.now() - replay.windowMs,
        );
      } catch (err) {
        release(undefined);
        throw err;
      }
      if (found !== undefined) {
        release(found);
        return { duplicateOf: found };
      }
      return { release };
    }
  }
}
