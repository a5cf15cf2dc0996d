/**
 * The control document's shape, checked when it is read back (from state.json or from the
 * database's control row), with the defaults of fields added since earlier versions.
 */
import { PosternError } from '../../shared/errors.ts';
import { isObject } from '../../shared/fields.ts';
import type { ControlState } from './types.ts';

export function emptyControl(): ControlState {
  return { adminTokenHash: null, channels: [], agents: [], pairings: [], usedTokenIds: [] };
}

export function parseControl(value: unknown, source: string): ControlState {
  const ok =
    isObject(value) &&
    Array.isArray(value['channels']) &&
    Array.isArray(value['agents']) &&
    Array.isArray(value['pairings']) &&
    (value['adminTokenHash'] === null || typeof value['adminTokenHash'] === 'string');
  if (!ok) {
    throw new PosternError(
      'ERR_STORE_CORRUPT',
      `${source}: expected {adminTokenHash, channels: [], agents: [], pairings: []}`,
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
