/**
 * The control-plane document (channels, agents, pairings, hashed admin token, used token
 * ids): one lowdb document, written durably, one change at a time.
 */
import path from 'node:path';
import { Low } from 'lowdb';
import { PosternError } from '../../shared/errors.ts';
import { isObject } from '../../shared/fields.ts';
import { DurableJsonFile } from './durable-file.ts';
import type { ControlState } from './types.ts';

function emptyControl(): ControlState {
  return { adminTokenHash: null, channels: [], agents: [], pairings: [], usedTokenIds: [] };
}

function parseControl(value: unknown, file: string): ControlState {
  const ok =
    isObject(value) &&
    Array.isArray(value['channels']) &&
    Array.isArray(value['agents']) &&
    Array.isArray(value['pairings']) &&
    (value['adminTokenHash'] === null || typeof value['adminTokenHash'] === 'string');
  if (!ok) {
    throw new PosternError(
      'ERR_STORE_CORRUPT',
      `${file}: expected {adminTokenHash, channels: [], agents: [], pairings: []}`,
    );
  }
  const state = value as unknown as ControlState;
  // Documents written by earlier versions lack newer fields: fill in their defaults.
  for (const c of state.channels) {
    c.orderingKey ??= null;
    c.rateLimit ??= null;
    c.methods ??= null;
    c.paths ??= null;
  }
  if (!Array.isArray(state.usedTokenIds)) state.usedTokenIds = [];
  return state;
}

export class ControlDocument {
  readonly #db: Low<ControlState>;
  #queue: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.#db = new Low(
      new DurableJsonFile(path.join(dataDir, 'state.json'), parseControl),
      emptyControl(),
    );
  }

  read(): Promise<void> {
    return this.#db.read();
  }

  get state(): Readonly<ControlState> {
    return this.#db.data;
  }

  /** Applies `change` to a copy of the latest state, writes it durably, then makes it current. */
  update(change: (state: ControlState) => void): Promise<void> {
    const run = this.#queue.then(async () => {
      const next = structuredClone(this.#db.data);
      change(next);
      await this.#db.adapter.write(next);
      this.#db.data = next;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
