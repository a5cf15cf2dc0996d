/**
 * The control-plane document (channels, agents, pairings, hashed admin token, used token
 * ids): one lowdb document, written durably, one change at a time. Channel secrets are
 * encrypted on disk and plain in memory (see sealed-secrets.ts).
 */
import path from 'node:path';
import { Low } from 'lowdb';
import type { SecretsBox } from '../secrets-box.ts';
import { DurableJsonFile } from './durable-file.ts';
import { countSealed, SealedSecrets, type OpenResult } from './sealed-secrets.ts';
import { emptyControl, parseControl } from './control-state.ts';
import type { ControlState } from './types.ts';

export class ControlDocument {
  readonly #db: Low<ControlState>;
  readonly #file: string;
  #secrets: SealedSecrets | null = null;
  #queue: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.#file = path.join(dataDir, 'state.json');
    this.#db = new Low(new DurableJsonFile(this.#file, parseControl), emptyControl());
  }

  /**
   * Reads the document and opens its secrets with the box `keyFor` gives (told whether the
   * document already holds encrypted secrets). Secrets found in clear, or lost with
   * `forgetLost`, are written back encrypted at once.
   */
  async read(
    keyFor: (holdsSealed: boolean) => Promise<SecretsBox>,
    forgetLost = false,
  ): Promise<OpenResult> {
    await this.#db.read();
    const secrets = new SealedSecrets(await keyFor(countSealed(this.#db.data) > 0));
    const result = secrets.open(this.#db.data, this.#file, forgetLost);
    this.#secrets = secrets;
    if (result.plaintext > 0 || result.lost.length > 0) {
      await this.#db.adapter.write(secrets.seal(this.#db.data));
    }
    return result;
  }

  get state(): Readonly<ControlState> {
    return this.#db.data;
  }

  /** Applies `change` to a copy of the latest state, writes it durably, then makes it current. */
  update(change: (state: ControlState) => void): Promise<void> {
    const run = this.#queue.then(async () => {
      if (!this.#secrets) throw new Error('the control document is updated before it is read');
      const next = structuredClone(this.#db.data);
      change(next);
      await this.#db.adapter.write(this.#secrets.seal(next));
      this.#db.data = next;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
