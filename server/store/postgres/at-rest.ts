/**
 * What the PostgreSQL store keeps on this machine, as the embedded store does: the data dir
 * (locked, one relay per dir; it holds the admin token and, by default, the secrets key) and
 * the key that seals channel secrets in `postern_control`. The database holds no secret in
 * clear: a dump of it alone opens no channel.
 */
import type { SecretsBox } from '../../secrets-box.ts';
import { lockDataDir, type StoreLog } from '../data-dir.ts';
import type { DataDirLock } from '../lock.ts';
import { countSealed, SealedSecrets } from '../sealed-secrets.ts';
import { loadSecretsKey, type SecretsKeySource } from '../secrets-key.ts';
import type { ControlState } from '../types.ts';

export interface AtRestOptions {
  /** Locked while the store is open; where `<data-dir>/secrets.key` lives. */
  dataDir: string;
  secretsKey: SecretsKeySource;
  /** Start even if the key cannot open the secrets: those channels then refuse every request. */
  forgetLostSecrets: boolean;
}

export class AtRest {
  readonly #opts: AtRestOptions;
  readonly #log: StoreLog;
  /** Names the control row in messages (the database, its URL redacted). */
  readonly #holder: string;
  #lock: DataDirLock | null = null;
  #secrets: SealedSecrets | null = null;

  constructor(opts: AtRestOptions, log: StoreLog, holder: string) {
    this.#opts = opts;
    this.#log = log;
    this.#holder = holder;
  }

  /** Takes the data dir's lock (before anything else is opened). */
  async lock(): Promise<void> {
    this.#lock ??= await lockDataDir(this.#opts.dataDir, this.#log);
  }

  async unlock(): Promise<void> {
    const lock = this.#lock;
    this.#lock = null;
    this.#secrets = null;
    await lock?.release();
  }

  /**
   * Loads the key for the control state as stored (told whether it already holds sealed
   * secrets: then a missing `<data-dir>/secrets.key` is an error, not a reason to make a new
   * key) and opens the secrets in place. Returns whether the row must be written back sealed
   * (secrets found in clear, or lost with --forget-lost-secrets).
   */
  async load(stored: ControlState): Promise<boolean> {
    const forget = this.#opts.forgetLostSecrets;
    const box: SecretsBox = await loadSecretsKey(this.#opts.secretsKey, this.#opts.dataDir, {
      needed: countSealed(stored) > 0 && !forget,
      log: this.#log,
      holder: this.#holder,
    });
    const secrets = new SealedSecrets(box);
    const result = secrets.open(stored, this.#holder, forget);
    this.#secrets = secrets;
    if (result.plaintext > 0) {
      this.#log.warn(
        { count: result.plaintext },
        `encrypting ${result.plaintext} channel secrets found in clear in the database`,
      );
    }
    if (result.lost.length > 0) {
      this.#log.warn(
        { channelIds: result.lost },
        'channel secrets lost with their key: these channels refuse every request until their verify secrets are set again',
      );
    }
    return result.plaintext > 0 || result.lost.length > 0;
  }

  /** A state just read: its secrets opened in place (ERR_SECRETS_KEY if the key cannot). */
  open(state: ControlState): ControlState {
    this.#secrets?.open(state, this.#holder, this.#opts.forgetLostSecrets);
    return state;
  }

  /** The state as written to the database: a copy with every secret sealed. */
  seal(state: ControlState): ControlState {
    return this.#secrets ? this.#secrets.seal(state) : state;
  }
}
