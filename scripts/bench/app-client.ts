/**
 * The benchmark's handle on the target app process (scripts/bench/target-app.ts): start it,
 * reset its counters, tell it which accepted events to wait for, and read its counts.
 */
import type { ChildProcess } from 'node:child_process';
import type { Children } from './children.ts';
import { IpcClient, isRecord, num, numOrNull, readReady } from './ipc.ts';

const ASK_MS = 15_000;

export type AppStats = {
  /** Requests received, duplicates included. */
  requests: number;
  /** Distinct `x-postern-event-id`s. */
  unique: number;
  /** Requests carrying an event id already seen (redeliveries). */
  duplicates: number;
  withoutId: number;
  /** Of the ids given to `expect`: how many, how many not yet seen, first and last arrival. */
  expected: number;
  missing: number;
  firstExpectedAt: number | null;
  lastExpectedAt: number | null;
  /** Distinct ids first seen inside the window asked for. */
  inWindow: number;
};

function decodeStats(v: unknown): AppStats {
  if (!isRecord(v)) throw new TypeError('stats: expected an object');
  return {
    requests: num(v, 'requests'),
    unique: num(v, 'unique'),
    duplicates: num(v, 'duplicates'),
    withoutId: num(v, 'withoutId'),
    expected: num(v, 'expected'),
    missing: num(v, 'missing'),
    firstExpectedAt: numOrNull(v, 'firstExpectedAt'),
    lastExpectedAt: numOrNull(v, 'lastExpectedAt'),
    inWindow: num(v, 'inWindow'),
  };
}

export class AppClient {
  readonly child: ChildProcess;
  readonly url: string;
  readonly #ipc: IpcClient;

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.url = `http://127.0.0.1:${port}`;
    this.#ipc = new IpcClient(child, 'target app');
  }

  static async start(kids: Children): Promise<AppClient> {
    const child = kids.spawnTs(
      'scripts/bench/target-app.ts',
      [],
      ['ignore', 'inherit', 'inherit', 'ipc'],
    );
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('target app did not start in 30 s')), 30_000);
      child.once('exit', (code) => reject(new Error(`target app exited (${code}) at start`)));
      child.on('message', (msg: unknown) => {
        const ready = readReady(msg);
        if (ready?.port) {
          clearTimeout(timer);
          resolve(ready.port);
        }
      });
    });
    return new AppClient(child, port);
  }

  reset(): Promise<AppStats> {
    return this.#ipc.request({ type: 'reset' }, decodeStats, ASK_MS);
  }

  /** From now on `missing` counts which of these ids the app has not received. */
  expect(ids: string[]): Promise<AppStats> {
    return this.#ipc.request({ type: 'expect', ids }, decodeStats, ASK_MS);
  }

  stats(window?: { from: number; to: number }): Promise<AppStats> {
    return this.#ipc.request(
      window ? { type: 'stats', window } : { type: 'stats' },
      decodeStats,
      ASK_MS,
    );
  }

  /** From now on the app records when each path is requested (see firstAfter). */
  async trackPaths(): Promise<void> {
    await this.#ipc.request({ type: 'trackPaths' }, decodeStats, ASK_MS);
  }

  /** Per path requested since trackPaths: the first request at or after `after`, or null. */
  firstAfter(after: number): Promise<Record<string, number | null>> {
    return this.#ipc.request(
      { type: 'firstAfter', after },
      (msg) => {
        const out: Record<string, number | null> = {};
        const got = isRecord(msg) ? msg['firstAfter'] : undefined;
        if (!isRecord(got)) throw new Error('target app: firstAfter without a record');
        for (const [p, v] of Object.entries(got)) {
          if (v !== null && typeof v !== 'number') throw new Error(`target app: bad time for ${p}`);
          out[p] = v;
        }
        return out;
      },
      ASK_MS,
    );
  }

  /**
   * Polls until every expected event has arrived. Bounded twice: it gives up when nothing new
   * arrived for `stallMs`, and at `deadline` whatever happens. Returns the last stats either way.
   */
  async waitDelivered(opts: {
    stallMs: number;
    deadline: number;
    onProgress?: (s: AppStats) => void;
  }): Promise<AppStats> {
    let stats = await this.stats();
    let lastMissing = stats.missing;
    let lastChange = Date.now();
    let lastReport = Date.now();
    while (stats.missing > 0) {
      const now = Date.now();
      if (now - lastChange > opts.stallMs || now > opts.deadline) return stats;
      if (opts.onProgress && now - lastReport >= 5_000) {
        opts.onProgress(stats);
        lastReport = now;
      }
      await new Promise((r) => setTimeout(r, 50));
      stats = await this.stats();
      if (stats.missing !== lastMissing) {
        lastMissing = stats.missing;
        lastChange = Date.now();
      }
    }
    return stats;
  }
}
