/**
 * Full-jitter exponential backoff: a wait drawn uniformly from [0, min(cap, base · 2^attempt)].
 * Spreads reconnecting agents apart instead of letting them stampede together.
 * https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  /** Uniform random in [0, 1); injectable so tests are deterministic. */
  random?: () => number;
}

export function fullJitterBackoff(attempt: number, opts: BackoffOptions): number {
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
