/**
 * Dispatch: which event goes to which tunnel session, and when.
 *
 * Each channel has a FIFO of ready events; events waiting for a retry sit in one timer heap.
 * A session takes events of the channels its agent is granted while it has room in its window.
 * Each `deliver` is one attempt; the agent's `ack` decides what happens next (the relay owns
 * the schedule). Waiting for an agent consumes no attempt. Nothing here is O(backlog) per event.
 */
import type { Logger } from 'pino';
import type { AgentFrame, RelayFrame } from '../../shared/protocol.ts';
import { PosternError } from '../../shared/errors.ts';
import type { ChannelRecord, EventSummary, EventUpdate, Store } from '../store/types.ts';
import { Deque, TimerHeap } from './queues.ts';
import { nextRetry } from './retry.ts';

type DeliverFrame = Extract<RelayFrame, { type: 'deliver' }>;
export type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

/** A tunnel session as dispatch sees it. */
export interface Sink {
  readonly id: string;
  readonly agentId: string;
  readonly window: number;
  readonly channels: readonly string[];
  readonly open: boolean;
  send(frame: DeliverFrame): void;
}

/** When no agent has a route for a channel, look again after this long (no attempt used). */
const NO_ROUTE_RETRY_MS = 30_000;
/** When an event's body cannot be read back, look again after this long. */
const READ_RETRY_MS = 30_000;

interface ChannelQueue {
  ready: Deque<string>;
  sinks: Set<Sink>;
  inflight: number;
  /** When an ordered channel's head becomes due, if a wake-up is already set for it. */
  wakeAt: number;
}

export interface DispatcherDeps {
  store: Store;
  logger: Logger;
  channel: (id: string) => ChannelRecord | undefined;
  now?: () => number;
  random?: () => number;
  /** Told of every attempt's outcome, and of the receipt-to-delivery time of delivered ones. */
  onAttempt?: (outcome: AckFrame['outcome'], deliveredAfterMs: number | null) => void;
}

export class Dispatcher {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #channel: (id: string) => ChannelRecord | undefined;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #onAttempt: NonNullable<DispatcherDeps['onAttempt']>;
  readonly #queues = new Map<string, ChannelQueue>();
  /** Where each pending event is: in a ready FIFO, in the timer heap, or with a sink. */
  readonly #where = new Map<string, 'ready' | 'timer' | Sink>();
  readonly #inflight = new Map<Sink, Map<string, number>>();
  /** The last pending send of each session, so that frames leave in the order they were taken. */
  readonly #sendChains = new Map<Sink, Promise<void>>();
  /** Timer heap of event ids (retries) and channel ids (ordered channels waiting on their head). */
  readonly #timers = new TimerHeap<string>();
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  /** Ingress requests of sync channels waiting for the app's response, by event id. */
  readonly #responseWaiters = new Map<string, (ack: AckFrame) => void>();

  constructor(deps: DispatcherDeps) {
    this.#store = deps.store;
    this.#log = deps.logger;
    this.#channel = deps.channel;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#onAttempt = deps.onAttempt ?? (() => undefined);
  }

  /** Loads every pending event from the store (after a restart). */
  start(): void {
    for (const summary of this.#store.pendingEvents()) this.#place(summary);
    for (const channelId of this.#queues.keys()) this.#pump(channelId);
    this.#arm();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** A newly stored (or replayed) event. */
  enqueue(summary: EventSummary): void {
    if (this.#where.has(summary.id)) {
      // Already pending: a replay only makes it due now.
      if (this.#where.get(summary.id) === 'timer' && summary.nextAttemptAt <= this.#now()) {
        this.#where.set(summary.id, 'ready');
        this.#queue(summary.channelId).ready.push(summary.id);
      }
    } else {
      this.#place(summary);
    }
    this.#pump(summary.channelId);
    this.#arm();
  }

  /** Whether some connected session can take this channel's events now or soon. */
  hasSink(channelId: string): boolean {
    const q = this.#queues.get(channelId);
    if (!q) return false;
    for (const sink of q.sinks) if (sink.open) return true;
    return false;
  }

  /**
   * For sync channels: resolves with the agent's ack (carrying the app's response) for the
   * event's next attempt, or null after `timeoutMs`. The event stays queued either way.
   */
  awaitResponse(eventId: string, timeoutMs: number): Promise<AckFrame | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#responseWaiters.delete(eventId);
        resolve(null);
      }, timeoutMs);
      this.#responseWaiters.set(eventId, (ack) => {
        clearTimeout(timer);
        this.#responseWaiters.delete(eventId);
        resolve(ack);
      });
    });
  }

  isInFlight(eventId: string): boolean {
    const where = this.#where.get(eventId);
    return where !== undefined && where !== 'ready' && where !== 'timer';
  }

  attach(sink: Sink): void {
    this.#inflight.set(sink, new Map());
    for (const channelId of sink.channels) {
      this.#queue(channelId).sinks.add(sink);
      this.#pump(channelId);
    }
  }

  /** The session ended: everything it had not acknowledged goes back to the front. */
  detach(sink: Sink): void {
    const inflight = this.#inflight.get(sink);
    if (!inflight) return;
    this.#inflight.delete(sink);
    this.#sendChains.delete(sink);
    const ids = [...inflight.keys()].reverse();
    for (const id of ids) {
      const summary = this.#store.getEvent(id);
      this.#store.markDelivering(id, false);
      if (!summary) {
        this.#where.delete(id);
        continue;
      }
      const q = this.#queue(summary.channelId);
      q.inflight--;
      this.#where.set(id, 'ready');
      q.ready.unshift(id);
    }
    for (const channelId of sink.channels) this.#queue(channelId).sinks.delete(sink);
    for (const channelId of sink.channels) this.#pump(channelId);
    this.#arm();
  }

  /** Age of the oldest unacknowledged delivery of a session, in ms (0 when none). */
  oldestInFlightMs(sink: Sink): number {
    const inflight = this.#inflight.get(sink);
    if (!inflight) return 0;
    let oldest = Infinity;
    for (const sentAt of inflight.values()) oldest = Math.min(oldest, sentAt);
    return oldest === Infinity ? 0 : this.#now() - oldest;
  }

  inFlightCount(sink: Sink): number {
    return this.#inflight.get(sink)?.size ?? 0;
  }

  /** The agent reported the outcome of one attempt; state changes at once, disk follows. */
  ack(sink: Sink, frame: AckFrame): void {
    const inflight = this.#inflight.get(sink);
    if (!inflight?.has(frame.eventId)) {
      this.#log.warn(
        { agentId: sink.agentId, eventId: frame.eventId },
        'ack for an event not in flight on this session; ignored',
      );
      return;
    }
    inflight.delete(frame.eventId);
    this.#where.delete(frame.eventId);
    this.#responseWaiters.get(frame.eventId)?.(frame);
    this.#store.markDelivering(frame.eventId, false);
    const summary = this.#store.getEvent(frame.eventId);
    if (!summary) return;
    const q = this.#queue(summary.channelId);
    q.inflight--;
    const now = this.#now();
    const attempt = {
      at: now,
      agentId: sink.agentId,
      outcome: frame.outcome,
      status: frame.status ?? null,
      durationMs: frame.durationMs,
      error: frame.error ?? null,
    };
    this.#onAttempt(frame.outcome, frame.outcome === 'delivered' ? now - summary.receivedAt : null);
    // Plain fields, not a child logger: this runs once per delivery.
    const ids = { eventId: summary.id, channelId: summary.channelId, agentId: sink.agentId };
    let update: EventUpdate;
    if (frame.outcome === 'delivered') {
      update = {
        status: 'delivered',
        attemptCount: summary.attemptCount + 1,
        nextAttemptAt: 0,
        attempt,
      };
      this.#log.debug(ids, 'delivered');
    } else {
      const channel = this.#channel(summary.channelId);
      const failures = frame.outcome === 'failed' ? summary.attemptCount + 1 : summary.attemptCount;
      const decision =
        frame.outcome === 'no_route'
          ? { kind: 'retry' as const, delayMs: NO_ROUTE_RETRY_MS }
          : nextRetry(channel?.retry.delaysMs ?? [], failures, frame.retryAfterMs, this.#random);
      if (decision.kind === 'give-up') {
        update = { status: 'failed', attemptCount: failures, nextAttemptAt: 0, attempt };
        this.#log.warn(
          { ...ids, attempts: failures, error: attempt.error, status: attempt.status },
          'delivery failed for good; event is now failed (replay it to try again)',
        );
      } else {
        update = {
          status: 'queued',
          attemptCount: failures,
          nextAttemptAt: now + decision.delayMs,
          attempt,
        };
        this.#log.info(
          {
            ...ids,
            outcome: frame.outcome,
            status: attempt.status,
            error: attempt.error,
            retryInMs: decision.delayMs,
          },
          'delivery attempt failed; will retry',
        );
      }
    }
    // Lazy: an outcome lost in a crash only means the event is offered again (at least once),
    // so it rides along with the next ingress commit instead of costing a flush of its own.
    this.#store.updateEvent(summary.id, update, { lazy: true }).catch((err: unknown) => {
      this.#log.error(
        { ...ids, err },
        'could not record a delivery outcome; the event will be offered again after a restart',
      );
    });
    if (update.status === 'queued') this.#place({ ...summary, ...update });
    this.#pump(summary.channelId);
    this.#arm();
  }

  /** Queues an event again with a fresh retry budget (same event id). */
  async replay(id: string): Promise<EventSummary> {
    const summary = this.#store.getEvent(id);
    if (!summary) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    if (summary.status === 'rejected') {
      throw new PosternError(
        'ERR_BAD_REQUEST',
        `event ${id} was rejected at the edge and has no body to deliver`,
        { status: 409 },
      );
    }
    if (this.isInFlight(id)) return summary;
    const updated = await this.#store.updateEvent(id, {
      status: 'queued',
      attemptCount: 0,
      nextAttemptAt: 0,
      replay: true,
    });
    this.enqueue(updated);
    return updated;
  }

  /** Drops a deleted channel's queue; its events stay in the store. */
  forgetChannel(channelId: string): void {
    const q = this.#queues.get(channelId);
    if (!q) return;
    for (let id = q.ready.shift(); id !== undefined; id = q.ready.shift()) this.#where.delete(id);
    this.#queues.delete(channelId);
  }

  #queue(channelId: string): ChannelQueue {
    let q = this.#queues.get(channelId);
    if (!q) {
      q = { ready: new Deque(), sinks: new Set(), inflight: 0, wakeAt: 0 };
      this.#queues.set(channelId, q);
    }
    return q;
  }

  #place(summary: EventSummary): void {
    const channel = this.#channel(summary.channelId);
    // Ordered channels keep every event in the FIFO; the head's own time gates the queue.
    if (summary.nextAttemptAt > this.#now() && !channel?.ordered) {
      this.#where.set(summary.id, 'timer');
      this.#timers.push(summary.nextAttemptAt, summary.id);
    } else {
      this.#where.set(summary.id, 'ready');
      if (channel?.ordered && summary.nextAttemptAt > 0) {
        // A failed head goes back to the front, keeping arrival order.
        this.#queue(summary.channelId).ready.unshift(summary.id);
      } else {
        this.#queue(summary.channelId).ready.push(summary.id);
      }
    }
  }

  #pump(channelId: string): void {
    const q = this.#queues.get(channelId);
    const channel = this.#channel(channelId);
    if (!q || !channel) return;
    while (q.ready.length > 0) {
      const id = q.ready.peek()!;
      const summary = this.#store.getEvent(id);
      if (this.#where.get(id) !== 'ready' || !summary || summary.status !== 'queued') {
        q.ready.shift();
        if (this.#where.get(id) === 'ready') this.#where.delete(id);
        continue;
      }
      if (channel.ordered) {
        if (q.inflight > 0) return;
        if (summary.nextAttemptAt > this.#now()) {
          if (q.wakeAt !== summary.nextAttemptAt) {
            q.wakeAt = summary.nextAttemptAt;
            this.#timers.push(summary.nextAttemptAt, channelId);
          }
          return;
        }
      }
      const sink = this.#pick(q);
      if (!sink) return;
      q.ready.shift();
      this.#send(sink, summary, channel, q);
    }
  }

  /** The connected session with the most room in its window. */
  #pick(q: ChannelQueue): Sink | undefined {
    let best: Sink | undefined;
    let bestFree = 0;
    for (const sink of q.sinks) {
      const free = sink.window - (this.#inflight.get(sink)?.size ?? sink.window);
      if (sink.open && free > bestFree) {
        best = sink;
        bestFree = free;
      }
    }
    return best;
  }

  #send(sink: Sink, summary: EventSummary, channel: ChannelRecord, q: ChannelQueue): void {
    const inflight = this.#inflight.get(sink)!;
    inflight.set(summary.id, this.#now());
    this.#where.set(summary.id, sink);
    q.inflight++;
    this.#store.markDelivering(summary.id, true);
    const attempt = summary.attemptCount + 1;
    // Reads run in parallel (a backlog comes from disk), sends leave in queue order.
    const read = this.#store.readPayload(summary.id);
    read.catch(() => undefined); // handled below, once the sends before it have left
    const previous = this.#sendChains.get(sink) ?? Promise.resolve();
    const next = previous
      .then(() => read)
      .then(
        (p) => {
          if (!sink.open || this.#where.get(summary.id) !== sink) return;
          sink.send({
            type: 'deliver',
            eventId: p.id,
            channelId: channel.id,
            channelName: channel.name,
            attempt,
            method: p.method,
            path: p.path,
            query: p.query,
            headers: p.headers,
            originalUrl: p.originalUrl,
            remoteAddress: p.remoteAddress,
            receivedAt: p.receivedAt,
            wantResponse: this.#responseWaiters.has(p.id),
            body: p.body,
          });
        },
        (err: unknown) => {
          this.#log.error(
            { err, eventId: summary.id },
            'cannot read event back from the store; will try again',
          );
          if (this.#where.get(summary.id) !== sink) return;
          inflight.delete(summary.id);
          q.inflight--;
          this.#store.markDelivering(summary.id, false);
          this.#where.set(summary.id, 'timer');
          this.#timers.push(this.#now() + READ_RETRY_MS, summary.id);
          this.#arm();
        },
      );
    this.#sendChains.set(sink, next);
  }

  #arm(): void {
    const at = this.#timers.peekAt();
    if (at === undefined || at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    const delay = Math.min(Math.max(0, at - this.#now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => this.#fire(), delay);
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    const channels = new Set<string>();
    for (const key of this.#timers.popDue(this.#now())) {
      if (key.startsWith('ch_')) {
        channels.add(key);
        continue;
      }
      const summary = this.#store.getEvent(key);
      if (this.#where.get(key) !== 'timer' || !summary) continue;
      // A stale wake-up: the event was replayed and rescheduled since this one was set.
      if (summary.nextAttemptAt > this.#now()) continue;
      this.#where.set(key, 'ready');
      this.#queue(summary.channelId).ready.push(key);
      channels.add(summary.channelId);
    }
    for (const channelId of channels) this.#pump(channelId);
    this.#arm();
  }
}
