/**
 * Token buckets keyed by a string (a client address, say): `burst` tokens, refilled at
 * `perSecond`. Bounded: at most `maxKeys` buckets, the oldest forgotten first.
 */
export interface RateLimitOptions {
  perSecond: number;
  burst: number;
  maxKeys?: number;
  now?: () => number;
}

export class RateLimiter {
  readonly #opts: Required<RateLimitOptions>;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(opts: RateLimitOptions) {
    this.#opts = { maxKeys: 10_000, now: Date.now, ...opts };
  }

  /** Takes one token; returns 0 when allowed, else the ms to wait before one is available. */
  take(key: string): number {
    const now = this.#opts.now();
    const { perSecond, burst } = this.#opts;
    let bucket = this.#buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      bucket.at = now;
      // Re-insert so the Map's order is least-recently-used first.
      this.#buckets.delete(key);
    } else {
      bucket = { tokens: burst, at: now };
      if (this.#buckets.size >= this.#opts.maxKeys) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / perSecond) * 1000);
  }
}
