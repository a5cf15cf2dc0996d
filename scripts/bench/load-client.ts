/**
 * The benchmark's handle on the load generator process (scripts/bench/load-worker.ts).
 */
import type { Children } from './children.ts';
import { IpcClient, readReady, type Json } from './ipc.ts';
import { decodeLoadResult, type LoadJob, type LoadResult } from './load-job.ts';

export class LoadClient {
  readonly #ipc: IpcClient;

  private constructor(ipc: IpcClient) {
    this.#ipc = ipc;
  }

  static async start(kids: Children): Promise<LoadClient> {
    const child = kids.spawnTs(
      'scripts/bench/load-worker.ts',
      [],
      ['ignore', 'inherit', 'inherit', 'ipc'],
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('load generator did not start in 30 s')),
        30_000,
      );
      child.once('exit', (code) => reject(new Error(`load generator exited (${code}) at start`)));
      child.on('message', (msg: unknown) => {
        if (readReady(msg)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return new LoadClient(new IpcClient(child, 'load generator'));
  }

  /** Runs one job; the answer may take the job's `maxSeconds` plus the time to wind down. */
  run(job: LoadJob): Promise<LoadResult> {
    const message: { type: string; job: Json } = { type: 'run', job: { ...job } };
    return this.#ipc.request(
      message,
      decodeLoadResult,
      (job.maxSeconds + job.timeoutS + 30) * 1000,
    );
  }
}
