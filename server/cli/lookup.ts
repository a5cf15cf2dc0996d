/** Names for the ids the admin API answers with, and agents found by id or name. */
import { ConfigError } from '../../shared/errors.ts';
import type { Client } from './client.ts';
import { list, str, type Names } from './render.ts';

/** Channel names by id (for lists that carry ids). */
export async function channelNames(client: Client): Promise<Names> {
  const r = await client.call('GET', '/api/channels');
  return new Map(list(r['channels']).map((c) => [str(c['id']), str(c['name'])]));
}

export async function agentNames(client: Client): Promise<Names> {
  const r = await client.call('GET', '/api/agents');
  return new Map(list(r['agents']).map((a) => [str(a['id']), str(a['name'])]));
}

/**
 * An agent's id from its id or name. The API takes ids; agent names need not be unique, so a
 * name shared by several agents is refused with their ids.
 */
export async function agentId(client: Client, idOrName: string): Promise<string> {
  const agents = list((await client.call('GET', '/api/agents'))['agents']);
  if (agents.some((a) => a['id'] === idOrName)) return idOrName;
  const matches = agents.filter((a) => a['name'] === idOrName);
  if (matches.length === 1) return str(matches[0]!['id']);
  if (matches.length > 1) {
    throw new ConfigError(
      `${matches.length} agents are named "${idOrName}" (${matches.map((a) => str(a['id'])).join(', ')}): give the id`,
    );
  }
  throw new ConfigError(`no agent with the id or name "${idOrName}" (agent list shows them)`);
}
