/**
 * What every scenario works with: the options, the helper processes, the overall deadline,
 * progress lines on stderr, and the list of correctness checks the run must pass.
 */
import type { AppClient } from './app-client.ts';
import type { Children } from './children.ts';
import type { LoadClient } from './load-client.ts';
import type { LoadJob } from './load-job.ts';
import { jsonBody } from './load-job.ts';
import type { BenchDatabases } from './databases.ts';
import type { BenchOptions, StoreName } from './options.ts';

export type Check = { name: string; ok: boolean; detail: string };

export class Bench {
  readonly opts: BenchOptions;
  readonly kids: Children;
  readonly app: AppClient;
  readonly load: LoadClient;
  /** When the hard timeout fires (ms since the epoch). */
  readonly deadline: number;
  readonly body: string;
  readonly checks: Check[] = [];
  /** The store the relays started now run on (`--store both` runs the scenarios once each). */
  store: StoreName = 'embedded';
  /** Where relays on PostgreSQL get their databases (set whenever PostgreSQL may be used). */
  readonly pg: BenchDatabases | null;
  readonly #started = Date.now();

  constructor(
    opts: BenchOptions,
    kids: Children,
    app: AppClient,
    load: LoadClient,
    deadline: number,
    pg: BenchDatabases | null,
  ) {
    this.pg = pg;
    this.opts = opts;
    this.kids = kids;
    this.app = app;
    this.load = load;
    this.deadline = deadline;
    this.body = jsonBody(opts.bodyBytes);
  }

  /**
   * Webhooks sent through a fresh relay before measuring it. A relay that has taken ~1,000
   * still ingests at half speed (JIT, pools); from ~5,000 on it is steady.
   */
  get relayWarmup(): number {
    return Math.min(10_000, Math.max(1_000, this.opts.connections * 100));
  }

  /** The databases of the current store: null on the embedded store. */
  get databases(): BenchDatabases | null {
    return this.store === 'postgres' ? this.pg : null;
  }

  progress(message: string): void {
    const t = ((Date.now() - this.#started) / 1000).toFixed(1).padStart(6);
    process.stderr.write(`[bench ${t}s] ${message}\n`);
  }

  /** A check of the current store's run, named after the store when PostgreSQL is in the run. */
  check(name: string, ok: boolean, detail: string): void {
    if (this.opts.store !== 'embedded') name = `${this.store}: ${name}`;
    this.checks.push({ name, ok, detail });
    if (!ok) this.progress(`CHECK FAILED: ${name}: ${detail}`);
  }

  /** Seconds left before the hard timeout, less a margin to report and clean up. */
  secondsLeft(): number {
    return Math.max(1, Math.floor((this.deadline - Date.now()) / 1000) - 10);
  }

  /** A load job with the run's body and defaults: a timed run unless `amount` is given. */
  job(url: string, fields: Partial<LoadJob> = {}): LoadJob {
    const amount = fields.amount ?? 0;
    const durationS = fields.durationS ?? this.opts.durationS;
    return {
      url,
      connections: Math.min(fields.connections ?? this.opts.connections, amount || Infinity),
      amount,
      durationS,
      body: this.body,
      headers: { 'content-type': 'application/json' },
      collectIds: fields.collectIds ?? false,
      timeoutS: fields.timeoutS ?? 10,
      maxSeconds: Math.min(
        fields.maxSeconds ?? (amount ? Infinity : durationS + 30),
        this.secondsLeft(),
      ),
    };
  }
}
