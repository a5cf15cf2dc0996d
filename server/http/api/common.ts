/** What the admin API's route modules share: field errors, 404s, timestamps. */
import { PosternError } from '../../../shared/errors.ts';
import type { Fail } from '../../../shared/fields.ts';
import type { AgentRecord, ChannelRecord } from '../../store/types.ts';
import type { RelayContext } from '../context.ts';

export const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_BAD_REQUEST', `${field}: expected ${expected}`, { status: 400 });
};

export function notFound(what: string): never {
  throw new PosternError('ERR_NOT_FOUND', `no such ${what}`, { status: 404 });
}

/**
 * A channel by id or name, or 404. One not known here is looked for once more in the store:
 * another relay on the same database may have created it a moment ago.
 */
export async function channelOr404(relay: RelayContext, idOrName: string): Promise<ChannelRecord> {
  const known = relay.channel(idOrName, true);
  if (known) return known;
  await relay.control.fresh();
  return relay.channel(idOrName, true) ?? notFound('channel');
}

/** An agent by id, or 404; looked for once more in the store as `channelOr404`. */
export async function agentOr404(relay: RelayContext, id: string): Promise<AgentRecord> {
  const find = () => relay.control.state.agents.find((a) => a.id === id);
  const known = find();
  if (known) return known;
  await relay.control.fresh();
  return find() ?? notFound('agent');
}

/** A timestamp as API answers show it: ISO 8601, or null when unset. */
export const iso = (ms: number | null) =>
  ms === null || ms === 0 ? null : new Date(ms).toISOString();
