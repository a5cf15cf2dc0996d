/**
 * Group commit: calls made while a commit is under way wait for it and go together in the next
 * transaction, so the cost of a commit is shared by every call that waited for it. A lazy call
 * waits, up to a deadline, for an urgent one to ride along with.
 */

interface Entry<T, R> {
  item: T;
  urgent: boolean;
  resolve: (value: R) => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  /** Transactions under way at once. */
  maxInFlight: number;
  /** Calls per transaction at most. */
  maxBatch: number;
  /** Longest a lazy call waits for company. */
  lazyMs: number;
}

export class GroupCommit<T, R> {
  readonly #run: (items: T[]) => Promise<R[]>;
  readonly #opts: GroupCommitOptions;
  #queue: Entry<T, R>[] = [];
  /** Urgent calls waiting: while any is queued, batches go as soon as one may. */
  #urgent = 0;
  /** Set by the lazy deadline or a flush: send everything queued, lazy or not. */
  #drain = false;
  #inFlight = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Everything queued or under way, for `flush`. */
  readonly #open = new Set<Promise<unknown>>();

  constructor(run: (items: T[]) => Promise<R[]>, opts: GroupCommitOptions) {
    this.#run = run;
    this.#opts = opts;
  }

  /** Resolves with the result of `item` once its transaction committed. */
  add(item: T, opts: { lazy?: boolean } = {}): Promise<R> {
    const urgent = !opts.lazy;
    const p = new Promise<R>((resolve, reject) =>
      this.#queue.push({ item, urgent, resolve, reject }),
    );
    const tracked = p.then(
      () => undefined,
      () => undefined,
    );
    this.#open.add(tracked);
    void tracked.then(() => this.#open.delete(tracked));
    if (urgent) {
      this.#urgent++;
      this.#pump();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.#drain = true;
        this.#pump();
      }, this.#opts.lazyMs);
    }
    return p;
  }

  /** Whether calls are queued or under way. */
  get busy(): boolean {
    return this.#open.size > 0;
  }

  /** Sends what is queued now and waits until it, and everything under way, has settled. */
  async flush(): Promise<void> {
    if (this.#open.size === 0) return;
    const open = [...this.#open];
    this.#drain = true;
    this.#pump();
    await Promise.all(open);
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#opts.maxInFlight) {
      if (!this.#drain && this.#urgent === 0) return;
      const batch = this.#queue.splice(0, this.#opts.maxBatch);
      for (const e of batch) if (e.urgent) this.#urgent--;
      this.#inFlight++;
      void this.#send(batch);
    }
    if (this.#queue.length === 0) {
      this.#drain = false;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  async #send(batch: Entry<T, R>[]): Promise<void> {
    try {
      const results = await this.#run(batch.map((e) => e.item));
      batch.forEach((e, i) => e.resolve(results[i]!));
    } catch (err) {
      for (const e of batch) e.reject(err);
    } finally {
      this.#inFlight--;
      this.#pump();
    }
  }
}
