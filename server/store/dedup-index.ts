/**
 * The embedded store's index of recent dedup keys (replay protection): channel + key → the
 * event stored with it and when it arrived. Rebuilt from the journal on open. Bounded: keys
 * older than MAX_DEDUP_AGE_MS behind the newest are forgotten, and past MAX_DEDUP_KEYS the
 * oldest go first. "Oldest" is journal order, which is arrival order but for events that
 * compaction wrote forward: those may linger a little longer (`find` still checks the age).
 */

/** At most this many keys are held (about 150 bytes each). */
export const MAX_DEDUP_KEYS = 1_000_000;

/** The longest window a caller asks about (a day, for body-only signatures), plus margin. */
export const MAX_DEDUP_AGE_MS = 25 * 3_600_000;

interface Seen {
  id: string;
  at: number;
}

export class DedupIndex {
  /** In journal order (oldest first), so that eviction takes from the front. */
  readonly #seen = new Map<string, Seen>();
  #newest = 0;

  constructor(private readonly maxKeys = MAX_DEDUP_KEYS) {}

  get size(): number {
    return this.#seen.size;
  }

  /**
   * Remembers the event stored with `key` on the channel. A key seen again past its window
   * (a new event then) points at the newer event from now on.
   */
  add(channelId: string, key: string, id: string, at: number): void {
    const slot = `${channelId} ${key}`;
    const seen = this.#seen.get(slot);
    if (seen !== undefined && seen.at >= at) return;
    this.#seen.delete(slot);
    this.#seen.set(slot, { id, at });
    if (at > this.#newest) this.#newest = at;
    this.#evict();
  }

  /** The event stored with `key` on the channel and received at or after `since`. */
  find(channelId: string, key: string, since: number): string | undefined {
    const seen = this.#seen.get(`${channelId} ${key}`);
    return seen !== undefined && seen.at >= since ? seen.id : undefined;
  }

  #evict(): void {
    const cutoff = this.#newest - MAX_DEDUP_AGE_MS;
    for (const [slot, seen] of this.#seen) {
      if (this.#seen.size <= this.maxKeys && seen.at >= cutoff) break;
      this.#seen.delete(slot);
    }
  }
}
