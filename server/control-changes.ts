/**
 * What a change of the control state means for the tunnels and dispatch of this relay, decided
 * by comparing the state before and after, whichever relay made the change: an agent removed
 * or paired again loses its tunnels (its old key is dead), an agent whose grants changed or one
 * of whose channels was renamed reconnects to get a new welcome, and dispatch looks again at
 * channels whose settings changed.
 */
import type { AgentRecord, ChannelRecord, ControlState } from './store/types.ts';

export interface ControlReactions {
  /** Closes every live tunnel of an agent, with the close code's meaning (`revoked`). */
  closeAgent(agentId: string, why: 'revoked' | 'reconnect', reason: string): void;
  channelChanged(channelId: string): void;
  channelRemoved(channelId: string): void;
}

/** Grants equal but for channels that were deleted (a deleted channel needs no reconnect). */
function sameGrants(a: AgentRecord, b: AgentRecord, exists: (id: string) => boolean): boolean {
  const left = a.channels.filter(exists);
  const right = b.channels.filter(exists);
  return left.length === right.length && left.every((c, i) => right[i] === c);
}

export function reactToControlChange(
  before: ControlState,
  after: ControlState,
  react: ControlReactions,
): void {
  const channelsAfter = new Map<string, ChannelRecord>(after.channels.map((c) => [c.id, c]));
  const renamed = new Set<string>();
  for (const old of before.channels) {
    const now = channelsAfter.get(old.id);
    if (!now) {
      react.channelRemoved(old.id);
      continue;
    }
    if (now.name !== old.name) renamed.add(old.id);
    if (JSON.stringify(now) !== JSON.stringify(old)) react.channelChanged(old.id);
  }
  const agentsAfter = new Map<string, AgentRecord>(after.agents.map((a) => [a.id, a]));
  for (const old of before.agents) {
    const now = agentsAfter.get(old.id);
    if (!now) react.closeAgent(old.id, 'revoked', 'agent revoked');
    else if (old.publicKey !== null && now.publicKey?.x !== old.publicKey.x) {
      react.closeAgent(old.id, 'revoked', 'agent re-paired');
    } else if (!sameGrants(old, now, (id) => channelsAfter.has(id))) {
      react.closeAgent(old.id, 'reconnect', 'channel grants changed; reconnect');
    } else if (old.channels.some((c) => renamed.has(c))) {
      react.closeAgent(old.id, 'reconnect', 'channel renamed; reconnect');
    }
  }
}
