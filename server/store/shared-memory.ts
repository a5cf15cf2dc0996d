/**
 * Rule 8 of the store contract (types.ts) in memory, for a store that one relay alone uses
 * (the embedded store): rate-limit buckets, the apps' answers to sync events, and presence.
 * Bounded: at most MAX_BUCKETS buckets (the least recently used go first), answers only until
 * their deadline, one presence per relay.
 */
import type { AppResponse, Presence, RateLimit, StoreChange } from './types.ts';

/** Buckets kept at most by default. */
export const MAX_BUCKETS = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class SharedMemory {
  readonly #buckets = new Map<string, Bucket>();
  readonly #responses = new Map<string, { response: AppResponse; until: number }>();
  readonly #presence = new Map<string, Presence>();
  readonly #emit: (change: StoreChange) => void;
  readonly #maxBuckets: number;

  constructor(emit: (change: StoreChange) => void, maxBuckets = MAX_BUCKETS) {
    this.#emit = emit;
    this.#maxBuckets = maxBuckets;
  }

  takeToken(key: string, limit: RateLimit, now: number): number {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      const elapsed = Math.max(0, now - bucket.at);
      bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsed / 1000) * limit.perSecond);
      bucket.at = Math.max(bucket.at, now);
      // Re-inserted so that the Map's order is least recently used first.
      this.#buckets.delete(key);
    } else {
      bucket = { tokens: limit.burst, at: now };
      if (this.#buckets.size >= this.#maxBuckets) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / limit.perSecond) * 1000);
  }

  publishResponse(response: AppResponse, until: number, now: number): void {
    for (const [id, r] of this.#responses) if (r.until < now) this.#responses.delete(id);
    this.#responses.set(response.eventId, { response: copy(response), until });
    this.#emit({ type: 'response', eventId: response.eventId });
  }

  readResponse(eventId: string, now: number): AppResponse | undefined {
    const r = this.#responses.get(eventId);
    return r && r.until >= now ? copy(r.response) : undefined;
  }

  putPresence(owner: string, agents: readonly string[], until: number): void {
    const before = this.#presence.get(owner);
    const sorted = [...new Set(agents)].sort();
    if (sorted.length === 0) this.#presence.delete(owner);
    else this.#presence.set(owner, { owner, agents: sorted, until });
    if (before?.agents.join() !== (sorted.length === 0 ? undefined : sorted.join()))
      this.#emit({ type: 'presence' });
  }

  readPresence(now: number): Presence[] {
    return [...this.#presence.values()]
      .filter((p) => p.until >= now)
      .map((p) => ({ ...p, agents: [...p.agents] }));
  }
}

function copy(r: AppResponse): AppResponse {
  return {
    eventId: r.eventId,
    status: r.status,
    headers: r.headers.map(([k, v]) => [k, v] as [string, string]),
    body: Buffer.from(r.body),
  };
}
