/**
 * Why an unfinished event waits: the `waiting` object of event resources (README, "Events").
 * Decided from what the relay knows: which agents are granted the channel (control state),
 * which of them hold a tunnel on any relay (presence), the event's last attempt, an earlier
 * pending event of its ordering key, and a claim in progress. First cause wins, in the order
 * of `Reason`: the first one is the one to fix first.
 */
import type { AgentRecord, ChannelRecord, EventSummary, Store } from '../store/types.ts';

export type Reason = 'no_agent' | 'agent_offline' | 'ordered' | 'no_route' | 'retry' | 'delivering';

export interface Waiting {
  reason: Reason;
  /** One line for humans. */
  message: string;
  /** ms since epoch. */
  retryAt?: number;
  lastError?: string;
  agentId?: string;
  agentName?: string;
  blockedBy?: string;
}

/** What the relay knows about an event's surroundings, gathered by `WaitingExplainer`. */
export interface WaitingFacts {
  channel: ChannelRecord | undefined;
  /** Agents granted the event's channel. */
  granted: readonly AgentRecord[];
  connected: (agentId: string) => boolean;
  /** The agent a claim of this relay sent the event to, if any. */
  deliveringBy: string | undefined;
  /** An earlier pending event of the same ordering key (ordered channels), if one was found. */
  blockedBy: string | undefined;
  now: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

function who(a: AgentRecord): string {
  return `agent ${JSON.stringify(a.name)} (${a.id})`;
}

function agentFields(a: AgentRecord | undefined): Pick<Waiting, 'agentId' | 'agentName'> {
  return a ? { agentId: a.id, agentName: a.name } : {};
}

/** The last attempt's error in one line (an app's status when it gave no other text). */
function errorOf(attempt: EventSummary['attempts'][number]): string {
  const text =
    attempt.error ?? (attempt.status === null ? 'failed' : `app answered ${attempt.status}`);
  return text.replace(/\s+/g, ' ').slice(0, 500);
}

/** Undefined for an event that is not waiting (neither `queued` nor `delivering`). */
export function explainWaiting(e: EventSummary, facts: WaitingFacts): Waiting | undefined {
  if (e.status !== 'queued' && e.status !== 'delivering') return undefined;
  const channel = facts.channel ? `channel ${JSON.stringify(facts.channel.name)}` : 'its channel';
  const online = facts.granted.filter((a) => facts.connected(a.id));
  if (e.status === 'delivering') {
    // Claimed elsewhere: when one granted agent only is connected, it is the one.
    const id = facts.deliveringBy ?? (online.length === 1 ? online[0]!.id : undefined);
    const agent = facts.granted.find((a) => a.id === id);
    return {
      reason: 'delivering',
      message: agent ? `being delivered by ${who(agent)}` : 'being delivered by an agent',
      ...(agent ? agentFields(agent) : id ? { agentId: id } : {}),
    };
  }
  if (facts.granted.length === 0) {
    return {
      reason: 'no_agent',
      message: `no agent is granted ${channel}; grant one and it goes at once`,
    };
  }
  if (online.length === 0) {
    const one = facts.granted.length === 1 ? facts.granted[0]! : undefined;
    const unpaired = one && one.publicKey === null;
    const message = one
      ? `${who(one)}, the only one granted ${channel}, ${unpaired ? 'is not paired yet' : 'is not connected'}`
      : `none of the ${facts.granted.length} agents granted ${channel} is connected`;
    return { reason: 'agent_offline', message, ...agentFields(one) };
  }
  if (facts.blockedBy !== undefined) {
    const key = e.orderKey ? ` (key ${JSON.stringify(e.orderKey.slice(0, 100))})` : '';
    return {
      reason: 'ordered',
      message: `held behind ${facts.blockedBy}, an earlier event of its ordering key${key}`,
      blockedBy: facts.blockedBy,
    };
  }
  const last = e.attempts.at(-1);
  if (last?.outcome === 'no_route') {
    const agent = facts.granted.find((a) => a.id === last.agentId);
    return {
      reason: 'no_route',
      message:
        `${agent ? who(agent) : 'the agent'} has no route for ${channel} (at ${iso(last.at)}); ` +
        'it goes as soon as a connected agent has one',
      retryAt: e.nextAttemptAt,
      ...agentFields(agent),
      ...(agent ? {} : { agentId: last.agentId }),
    };
  }
  if (last?.outcome === 'failed' && e.attemptCount > 0) {
    const lastError = errorOf(last);
    const when = e.nextAttemptAt > facts.now ? `at ${iso(e.nextAttemptAt)}` : 'now';
    return {
      reason: 'retry',
      message: `waiting to retry ${when} after attempt ${e.attemptCount} failed: ${lastError}`,
      retryAt: e.nextAttemptAt,
      lastError,
    };
  }
  // Due, an agent connected: it goes as soon as one has room in its window.
  const agent = online.length === 1 ? online[0] : undefined;
  return {
    reason: 'delivering',
    message: `due: goes to ${agent ? who(agent) : 'a connected agent'} as soon as it has room`,
    ...agentFields(agent),
  };
}

/** Queued events read to find an earlier event of the same ordering key, at most. */
const ORDER_SCAN_LIMIT = 1_000;
/** Causes that come before an ordering key's: while they hold, the order is not the question. */
const OFFLINE: ReadonlySet<Reason> = new Set(['no_agent', 'agent_offline']);
const PAGE = 500;

export interface ExplainerDeps {
  store: Store;
  channel: (id: string) => ChannelRecord | undefined;
  agents: () => readonly AgentRecord[];
  connected: (agentId: string) => boolean;
  deliveringBy: (eventId: string) => string | undefined;
  now: () => number;
}

/** Explains a batch of events (a page, a stream tick): store reads are shared within it. */
export class WaitingExplainer {
  readonly #deps: ExplainerDeps;

  constructor(deps: ExplainerDeps) {
    this.#deps = deps;
  }

  async explain(events: readonly EventSummary[]): Promise<Map<string, Waiting>> {
    const out = new Map<string, Waiting>();
    const agents = this.#deps.agents();
    const now = this.#deps.now();
    const firsts: { e: EventSummary; facts: WaitingFacts; first: Waiting }[] = [];
    /** Ordered channels whose pending events are worth reading, with the newest such event. */
    const newest = new Map<string, string>();
    for (const e of events) {
      const channel = this.#deps.channel(e.channelId);
      const facts: WaitingFacts = {
        channel,
        granted: agents.filter((a) => a.channels.includes(e.channelId)),
        connected: this.#deps.connected,
        deliveringBy: this.#deps.deliveringBy(e.id),
        blockedBy: undefined,
        now,
      };
      const first = explainWaiting(e, facts);
      if (!first) continue;
      firsts.push({ e, facts, first });
      // Only worth a read when no cause before it in the order of causes explains it.
      if (channel?.ordered && e.status === 'queued' && !OFFLINE.has(first.reason)) {
        const top = newest.get(e.channelId);
        if (top === undefined || e.id > top) newest.set(e.channelId, e.id);
      }
    }
    const pending = new Map<string, EventSummary[]>();
    for (const [channelId, top] of newest) {
      // A failed read only leaves the order unexplained: the other causes still show.
      pending.set(channelId, await this.#pending(channelId, top).catch(() => []));
    }
    for (const { e, facts, first } of firsts) {
      const earlier = pending.get(e.channelId);
      facts.blockedBy = earlier?.find((p) => p.orderKey === e.orderKey && p.id < e.id)?.id;
      out.set(e.id, facts.blockedBy === undefined ? first : explainWaiting(e, facts)!);
    }
    return out;
  }

  /**
   * The channel's pending events up to `top` (included), oldest first: every claimed one, and
   * the queued ones older than `top` as far as ORDER_SCAN_LIMIT reaches. Ids sort in arrival
   * order, so the first of a key here is its head, or at least an earlier event of that key.
   */
  async #pending(channelId: string, top: string): Promise<EventSummary[]> {
    const store = this.#deps.store;
    const claimed = await store.listEvents({ channelId, status: 'delivering', limit: PAGE });
    const queued: EventSummary[] = [];
    let before: string | undefined = top;
    for (let read = 0; before !== undefined && read < ORDER_SCAN_LIMIT; read += PAGE) {
      const page = await store.listEvents({ channelId, status: 'queued', before, limit: PAGE });
      queued.push(...page.events);
      before = page.next ?? undefined;
    }
    return [...claimed.events, ...queued].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
