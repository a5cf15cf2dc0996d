/**
 * What dispatch knows of each tunnel session: the deliveries it has not acknowledged (when
 * sent, of which channel, how many body bytes), whether it is benched for failing, and the
 * order its frames leave in. `pick` chooses where the next event of a channel goes;
 * `fillOrder` which of the session's channels gets room first.
 */
import { MAX_INFLIGHT_BYTES, type AgentFrame, type RelayFrame } from '../../shared/protocol.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;

/** A tunnel session as dispatch sees it. */
export interface Sink {
  readonly id: string;
  readonly agentId: string;
  readonly window: number;
  readonly channels: readonly string[];
  readonly open: boolean;
  send(frame: DeliverFrame): void;
}

/** A session whose deliveries failed this many times in a row is benched… */
const BENCH_AFTER_FAILURES = 3;
/** …for this long, while another session of the channel can take its events. */
const BENCH_MS = 30_000;

interface SessionState {
  /** Event id → when it was sent and its channel, for deliveries not yet acknowledged. */
  inflight: Map<string, { at: number; channelId: string }>;
  /** Channel id → its deliveries not yet acknowledged (absent when none). */
  perChannel: Map<string, number>;
  bytes: number;
  /** Room held for events being appended to come straight here (see `reserve`). */
  reserved: number;
  failures: number;
  benchedUntil: number;
  /** The last pending send, so that frames leave in the order they were taken. */
  chain: Promise<void>;
  /** The channel of the last event sent: freed room goes to the channels after it first. */
  lastChannel: string | undefined;
  /** Channels the agent answered `no_route` for on this session (its routes last a session). */
  noRoute: Set<string>;
}

export class Sessions {
  readonly #state = new Map<Sink, SessionState>();

  attach(sink: Sink): void {
    this.#state.set(sink, {
      inflight: new Map(),
      perChannel: new Map(),
      bytes: 0,
      reserved: 0,
      failures: 0,
      benchedUntil: 0,
      chain: Promise.resolve(),
      lastChannel: undefined,
      noRoute: new Set(),
    });
  }

  /** Forgets a session; returns what it had not acknowledged, newest first. */
  detach(sink: Sink): string[] {
    const state = this.#state.get(sink);
    this.#state.delete(sink);
    return state ? [...state.inflight.keys()].reverse() : [];
  }

  has(sink: Sink, eventId: string): boolean {
    return this.#state.get(sink)?.inflight.has(eventId) ?? false;
  }

  sent(sink: Sink, eventId: string, bytes: number, now: number, channelId: string): void {
    const state = this.#state.get(sink);
    if (!state) return;
    state.inflight.set(eventId, { at: now, channelId });
    state.perChannel.set(channelId, (state.perChannel.get(channelId) ?? 0) + 1);
    state.bytes += bytes;
    state.lastChannel = channelId;
  }

  /** How many more events the session could take now (0 at the byte bound). */
  room(sink: Sink): number {
    const state = this.#state.get(sink);
    if (!sink.open || state === undefined || state.bytes >= MAX_INFLIGHT_BYTES) return 0;
    return Math.max(0, sink.window - state.inflight.size - state.reserved);
  }

  /** Holds the room of `n` events (until `unreserve`) for events not yet sent. */
  reserve(sink: Sink, n = 1): void {
    const state = this.#state.get(sink);
    if (state) state.reserved += n;
  }

  unreserve(sink: Sink, n = 1): void {
    const state = this.#state.get(sink);
    if (state) state.reserved = Math.max(0, state.reserved - n);
  }

  /**
   * The order in which the session's channels are offered room in its window: the channel
   * with the fewest deliveries in flight on it first, ties in round-robin order (from the one
   * after the channel last sent from). One event at a time, so the window is shared: a busy
   * or slow channel cannot keep the room freed by acks, and a channel whose app answers
   * quickly keeps the room it frees rather than waiting for a slow one's acks.
   */
  fillOrder(sink: Sink): string[] {
    const state = this.#state.get(sink);
    const last = state?.lastChannel;
    const at = last === undefined ? -1 : sink.channels.indexOf(last);
    const rotation = [...sink.channels.slice(at + 1), ...sink.channels.slice(0, at + 1)];
    const inFlight = (c: string) => state?.perChannel.get(c) ?? 0;
    // Array sort is stable: equal counts keep their round-robin order.
    return rotation.sort((a, b) => inFlight(a) - inFlight(b));
  }

  /** The delivery is over for this session (acknowledged, or taken back). */
  settled(sink: Sink, eventId: string, bytes: number): void {
    const state = this.#state.get(sink);
    const entry = state?.inflight.get(eventId);
    if (!state || !entry) return;
    state.inflight.delete(eventId);
    state.bytes -= bytes;
    const n = (state.perChannel.get(entry.channelId) ?? 1) - 1;
    if (n > 0) state.perChannel.set(entry.channelId, n);
    else state.perChannel.delete(entry.channelId);
  }

  /** Counts failures: a session that keeps failing is benched while others succeed. */
  judge(sink: Sink, outcome: Extract<AgentFrame, { type: 'ack' }>['outcome'], now: number): void {
    const state = this.#state.get(sink);
    if (!state) return;
    if (outcome === 'delivered') {
      state.failures = 0;
      state.benchedUntil = 0;
    } else if (outcome === 'failed' && ++state.failures >= BENCH_AFTER_FAILURES) {
      state.benchedUntil = now + BENCH_MS;
    }
  }

  /** The agent has no route for the channel: for this session, other sessions come first. */
  markNoRoute(sink: Sink, channelId: string): void {
    this.#state.get(sink)?.noRoute.add(channelId);
  }

  /** Whether the session's agent answered `no_route` for the channel. */
  lacksRoute(sink: Sink, channelId: string): boolean {
    return this.#state.get(sink)?.noRoute.has(channelId) ?? false;
  }

  /**
   * The sessions of a channel that may have a route for it (open, and none answered
   * `no_route` for it); all of them when there is none such.
   */
  routable(sinks: Iterable<Sink>, channelId: string): Sink[] {
    const all = [...sinks];
    const some = all.filter((s) => s.open && !this.lacksRoute(s, channelId));
    return some.length > 0 ? some : all;
  }

  /** Runs `send` after the session's earlier sends (each may wait for a disk read). */
  inOrder(sink: Sink, send: () => Promise<void>): void {
    const state = this.#state.get(sink);
    if (state) state.chain = state.chain.then(send);
  }

  /**
   * The open session with the most room in its window (and under the byte bound). A benched
   * session gets nothing while a healthy one is connected, even a full one.
   */
  pick(sinks: Iterable<Sink>, now: number): Sink | undefined {
    const candidates = [...sinks].filter((s) => s.open && this.#state.has(s));
    const healthy = candidates.some((s) => this.#state.get(s)!.benchedUntil <= now);
    let best: Sink | undefined;
    let bestFree = 0;
    for (const sink of candidates) {
      const state = this.#state.get(sink)!;
      if (healthy && state.benchedUntil > now) continue;
      if (state.bytes >= MAX_INFLIGHT_BYTES) continue;
      const free = sink.window - state.inflight.size - state.reserved;
      if (free > bestFree) {
        best = sink;
        bestFree = free;
      }
    }
    return best;
  }

  count(sink: Sink): number {
    return this.#state.get(sink)?.inflight.size ?? 0;
  }

  /** Age of the session's oldest unacknowledged delivery, in ms (0 when none). */
  oldestMs(sink: Sink, now: number): number {
    let oldest = Infinity;
    for (const { at } of this.#state.get(sink)?.inflight.values() ?? []) {
      oldest = Math.min(oldest, at);
    }
    return oldest === Infinity ? 0 : now - oldest;
  }
}
