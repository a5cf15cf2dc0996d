/**
 * The highest RSS and RssAnon a process reached, sampled from /proc a few times a second for
 * as long as the watch runs. The process may be replaced (a relay killed and restarted): the
 * watch follows whichever pid it was last given.
 */
import { rssAnonBytes, rssBytes } from './proc-stats.ts';

const SAMPLE_MS = 200;

export type Memory = { rssBytes: number | null; rssAnonBytes: number | null };

/** The highest values, and what the scenario was doing when RssAnon was at its highest. */
export type PeakMemory = Memory & { rssAnonPeakDuring: string };

export function memoryOf(pid: number): Memory {
  return { rssBytes: rssBytes(pid), rssAnonBytes: rssAnonBytes(pid) };
}

function higher(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  return b === null ? a : Math.max(a, b);
}

export class MemoryWatch {
  #pid: number;
  #max: PeakMemory = { rssBytes: null, rssAnonBytes: null, rssAnonPeakDuring: '' };
  #phase: string;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number, phase: string) {
    this.#pid = pid;
    this.#phase = phase;
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.#timer.unref();
    this.sample();
  }

  follow(pid: number): void {
    this.#pid = pid;
    this.sample();
  }

  /** Names what happens from now on, for the report of when the peak was reached. */
  phase(name: string): void {
    this.sample();
    this.#phase = name;
  }

  /** Reads the process's memory now (and counts it towards the maximum). */
  sample(): Memory {
    const now = memoryOf(this.#pid);
    const anon = higher(this.#max.rssAnonBytes, now.rssAnonBytes);
    this.#max = {
      rssBytes: higher(this.#max.rssBytes, now.rssBytes),
      rssAnonBytes: anon,
      rssAnonPeakDuring:
        anon !== this.#max.rssAnonBytes ? this.#phase : this.#max.rssAnonPeakDuring,
    };
    return now;
  }

  /** Stops sampling and returns the highest values seen. */
  stop(): PeakMemory {
    clearInterval(this.#timer);
    this.sample();
    return this.#max;
  }
}
