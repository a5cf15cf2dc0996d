/**
 * Dispatch: which event goes to which tunnel session, and when.
 *
 * An unordered channel has a FIFO of ready events; its events waiting for a retry sit in one
 * timer heap. An ordered channel has one lane per ordering key (see lanes.ts). A session takes
 * events of the channels its agent is granted while it has room in its window; room freed by
 * an ack goes to the channel with work that has the fewest events in flight on the session
 * (ties in turn), so that a busy or slow channel cannot starve the others. With several agents
 * on a channel, each event goes to one of them, the one with the most room, and an agent whose
 * deliveries keep failing while another's succeed is benched for a while. Each `deliver` is
 * one attempt; the agent's `ack` decides what happens next (the relay owns the schedule).
 * Waiting for an agent consumes no attempt. Nothing here is O(backlog) per event; each event
 * an ack lets go costs a sort of the session's channels.
 *
 * Channel settings apply at once: `channelChanged` places a channel's pending events again by
 * its new settings. Events in flight at that moment stay in flight; their ack places them by
 * the settings of the moment it arrives.
 */
import type { Logger } from 'pino';
import type { AgentFrame } from '../../shared/protocol.ts';
import { PosternError } from '../../shared/errors.ts';
import type { ChannelRecord, EventSummary, Store } from '../store/types.ts';
import { Lanes } from './lanes.ts';
import { Sessions, type Sink } from './sessions.ts';
import { Deque, TimerHeap } from './queues.ts';
import { afterAttempt } from './retry.ts';

export type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

/** When an event's body cannot be read back, look again after this long. */
const READ_RETRY_MS = 30_000;

interface ChannelQueue {
  /** Unordered channels: events ready to go, oldest first. */
  ready: Deque<string>;
  /** Ordered channels: one lane per ordering key. */
  lanes: Lanes;
  readonly sinks: Set<Sink>;
}

/** A scheduled wake-up: an event's retry time, or an ordered lane's head becoming due. */
type Wake = { event: string } | { channel: string; key: string };

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
  /** Where each pending event is: a ready FIFO, the timer heap, an ordered lane, or a sink. */
  readonly #where = new Map<string, 'ready' | 'timer' | 'lane' | Sink>();
  /**
   * Events that were in flight when their channel's settings changed. On an ordered channel
   * they were put in their lane at their arrival place all the same, holding its key (see
   * Lanes.hold) until they come back.
   */
  readonly #crossed = new Set<string>();
  readonly #sessions = new Sessions();
  readonly #timers = new TimerHeap<Wake>();
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
    const where = this.#where.get(summary.id);
    if (where === undefined) {
      this.#place(summary);
    } else if (summary.nextAttemptAt <= this.#now()) {
      // Already pending: a replay only makes it due now.
      if (where === 'timer') {
        this.#where.set(summary.id, 'ready');
        this.#queue(summary.channelId).ready.push(summary.id);
      } else if (where === 'lane') {
        this.#releaseLane(summary.channelId, summary.orderKey);
      }
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
    this.#sessions.attach(sink);
    for (const channelId of sink.channels) this.#queue(channelId).sinks.add(sink);
    this.#pumpSink(sink);
  }

  /** The session ended: everything it had not acknowledged goes back to the front. */
  detach(sink: Sink): void {
    for (const id of this.#sessions.detach(sink)) {
      const summary = this.#store.getEvent(id);
      this.#store.markDelivering(id, false);
      if (!summary) {
        this.#where.delete(id);
        continue;
      }
      this.#giveBack(summary);
    }
    for (const channelId of sink.channels) this.#queue(channelId).sinks.delete(sink);
    for (const channelId of sink.channels) this.#pump(channelId);
    this.#arm();
  }

  /** Age of the oldest unacknowledged delivery of a session, in ms (0 when none). */
  oldestInFlightMs(sink: Sink): number {
    return this.#sessions.oldestMs(sink, this.#now());
  }

  inFlightCount(sink: Sink): number {
    return this.#sessions.count(sink);
  }

  /** The agent reported the outcome of one attempt; state changes at once, disk follows. */
  ack(sink: Sink, frame: AckFrame): void {
    if (!this.#sessions.has(sink, frame.eventId)) {
      this.#log.warn(
        { agentId: sink.agentId, eventId: frame.eventId },
        'ack for an event not in flight on this session; ignored',
      );
      return;
    }
    this.#where.delete(frame.eventId);
    const crossed = this.#crossed.delete(frame.eventId);
    this.#responseWaiters.get(frame.eventId)?.(frame);
    this.#store.markDelivering(frame.eventId, false);
    const summary = this.#store.getEvent(frame.eventId);
    this.#sessions.settled(sink, frame.eventId, summary?.size ?? 0);
    if (!summary) {
      this.#pumpSink(sink);
      return;
    }
    const q = this.#queue(summary.channelId);
    const now = this.#now();
    this.#sessions.judge(sink, frame.outcome, now);
    this.#onAttempt(frame.outcome, frame.outcome === 'delivered' ? now - summary.receivedAt : null);
    const delaysMs = this.#channel(summary.channelId)?.retry.delaysMs ?? [];
    const update = afterAttempt(summary, frame, sink.agentId, delaysMs, now, this.#random);
    // Plain fields, not a child logger: this runs once per delivery.
    const ids = { eventId: summary.id, channelId: summary.channelId, agentId: sink.agentId };
    const detail = { ...ids, status: frame.status, error: frame.error };
    if (update.status === 'delivered') this.#log.debug(ids, 'delivered');
    else if (update.status === 'filtered') this.#log.debug(ids, 'filtered: no route matches it');
    else if (update.status === 'failed') {
      this.#log.warn(
        { ...detail, attempts: update.attemptCount },
        'delivery failed for good; event is now failed (replay it to try again)',
      );
    } else {
      this.#log.info(
        { ...detail, outcome: frame.outcome, retryInMs: update.nextAttemptAt - now },
        'delivery attempt failed; will retry',
      );
    }
    // Lazy: an outcome lost in a crash only means the event is offered again (at least once),
    // so it rides along with the next ingress commit instead of costing a flush of its own.
    this.#store.updateEvent(summary.id, update, { lazy: true }).catch((err: unknown) => {
      this.#log.error(
        { ...ids, err },
        'could not record a delivery outcome; the event will be offered again after a restart',
      );
    });
    const next = { ...summary, ...update };
    if (this.#channel(summary.channelId)?.ordered) {
      if (crossed) {
        // Sent before the channel's settings changed: already in its lane, holding the key.
        q.lanes.unhold(summary.orderKey);
        // Waiting for a retry, it stays in its place (its time is checked when it is taken).
        if (update.status === 'queued') this.#where.set(summary.id, 'lane');
        else q.lanes.done(summary.orderKey, summary.id);
      } else if (update.status === 'queued') this.#waitInLane(next);
      else q.lanes.done(summary.orderKey, summary.id);
    } else if (update.status === 'queued') {
      this.#place(next);
    }
    // The room freed goes to the session's channels (see #pumpSink); then to other sessions
    // of this channel, if the ack let more of it go (the next event of an ordered lane).
    this.#pumpSink(sink);
    this.#pump(summary.channelId);
    this.#arm();
  }

  /**
   * A channel's settings changed: its pending events are placed again by the new ones
   * (`ordered`, ordering keys). Each event keeps the ordering key stored with it at ingress
   * (events stored while the channel had no `orderingKey` keep the empty key); one waiting for
   * a retry keeps its time. Events in flight stay in flight; on an ordered channel they take
   * their place in their lane all the same and hold it until their ack, which places them by
   * the settings of that moment (so a failed one is retried in its arrival place).
   */
  channelChanged(channelId: string): void {
    const q = this.#queue(channelId);
    for (const id of q.ready) if (this.#where.get(id) === 'ready') this.#where.delete(id);
    for (const id of q.lanes.ids()) if (this.#where.get(id) === 'lane') this.#where.delete(id);
    q.ready = new Deque();
    q.lanes = new Lanes();
    const ordered = this.#channel(channelId)?.ordered === true;
    // Stale wake-ups of the old placement find nothing to do (see #fire, #releaseLane).
    for (const summary of this.#store.pendingEvents()) {
      if (summary.channelId !== channelId) continue;
      const where = this.#where.get(summary.id);
      if (typeof where === 'object') {
        // In flight: it stays so; on an ordered channel it takes its place in its lane now.
        this.#crossed.add(summary.id);
        if (ordered) {
          q.lanes.push(summary.orderKey, summary.id);
          q.lanes.hold(summary.orderKey);
        }
      } else {
        this.#where.delete(summary.id);
        this.#place(summary);
      }
    }
    this.#pump(channelId);
    this.#arm();
  }

  /**
   * Moves an event out of the way now, as `failed` (it can be replayed later): the operator's
   * way to unblock an ordered channel held by a failing event. Not while it is in flight.
   */
  async skip(id: string): Promise<EventSummary> {
    const summary = this.#store.getEvent(id);
    if (!summary) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    if (summary.status !== 'queued') {
      throw new PosternError('ERR_BAD_REQUEST', `event ${id} is ${summary.status}, not queued`, {
        status: 409,
      });
    }
    const where = this.#where.get(id);
    this.#where.delete(id);
    if (where === 'lane') this.#queue(summary.channelId).lanes.done(summary.orderKey, id);
    const updated = await this.#store.updateEvent(id, {
      status: 'failed',
      attemptCount: summary.attemptCount,
      nextAttemptAt: 0,
      attempt: {
        at: this.#now(),
        agentId: '',
        outcome: 'skipped',
        status: null,
        durationMs: 0,
        error: 'skipped by an operator',
      },
    });
    this.#pump(summary.channelId);
    this.#arm();
    return updated;
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
    if (this.isInFlight(id)) {
      throw new PosternError('ERR_BAD_REQUEST', `event ${id} is being delivered right now`, {
        status: 409,
      });
    }
    const updated = await this.#store.updateEvent(id, {
      status: 'queued',
      attemptCount: 0,
      nextAttemptAt: 0,
      replays: summary.replays + 1,
    });
    this.enqueue(updated);
    return updated;
  }

  /** Drops a deleted channel's queue; its events stay in the store. */
  forgetChannel(channelId: string): void {
    const q = this.#queues.get(channelId);
    if (!q) return;
    for (const id of q.ready) if (this.#where.get(id) === 'ready') this.#where.delete(id);
    for (const id of q.lanes.ids()) if (this.#where.get(id) === 'lane') this.#where.delete(id);
    this.#queues.delete(channelId);
  }

  #queue(channelId: string): ChannelQueue {
    let q = this.#queues.get(channelId);
    if (!q) {
      q = { ready: new Deque(), lanes: new Lanes(), sinks: new Set() };
      this.#queues.set(channelId, q);
    }
    return q;
  }

  /** A pending event that is in no queue yet (new, replayed, or after a restart). */
  #place(summary: EventSummary): void {
    if (this.#channel(summary.channelId)?.ordered) {
      this.#where.set(summary.id, 'lane');
      // The lane head's own retry time is checked when it is taken (see #pumpLanes).
      this.#queue(summary.channelId).lanes.push(summary.orderKey, summary.id);
    } else if (summary.nextAttemptAt > this.#now()) {
      this.#where.set(summary.id, 'timer');
      this.#timers.push(summary.nextAttemptAt, { event: summary.id });
    } else {
      this.#where.set(summary.id, 'ready');
      this.#queue(summary.channelId).ready.push(summary.id);
    }
  }

  /** An ordered lane's head waits for its retry time; its key stays held until then. */
  #waitInLane(summary: EventSummary): void {
    this.#where.set(summary.id, 'lane');
    this.#timers.push(summary.nextAttemptAt, { channel: summary.channelId, key: summary.orderKey });
  }

  /** An event handed out but not acknowledged comes back (session lost, body unreadable). */
  #giveBack(summary: EventSummary, retryAt?: number): void {
    const q = this.#queue(summary.channelId);
    const crossed = this.#crossed.delete(summary.id);
    if (this.#channel(summary.channelId)?.ordered) {
      this.#where.set(summary.id, 'lane');
      if (crossed) {
        // Already in its lane (see channelChanged): it is offered again in its place; a
        // failed read is tried again when it is taken (and, failing again, waits as a head).
        q.lanes.unhold(summary.orderKey);
      } else if (retryAt === undefined) {
        q.lanes.release(summary.orderKey);
      } else {
        this.#timers.push(retryAt, { channel: summary.channelId, key: summary.orderKey });
      }
    } else if (retryAt !== undefined) {
      this.#where.set(summary.id, 'timer');
      this.#timers.push(retryAt, { event: summary.id });
    } else {
      this.#where.set(summary.id, 'ready');
      q.ready.unshift(summary.id);
    }
  }

  /** Lets a lane's head be offered again, unless it is in flight (a stale wake-up). */
  #releaseLane(channelId: string, key: string): void {
    const lanes = this.#queues.get(channelId)?.lanes;
    const head = lanes?.head(key);
    if (lanes && head !== undefined && this.#where.get(head) === 'lane') lanes.release(key);
  }

  /** Sends the channel's events while some session of it has room. */
  #pump(channelId: string): void {
    while (this.#sendOne(channelId));
  }

  /**
   * Fills a session's room one event at a time, each from the first of its channels in
   * `fillOrder` that has one to send (fewest in flight on the session, then round-robin), so
   * that a channel with a backlog past the window, or a slow app, cannot keep the room freed by
   * acks from the session's other channels. Costs O(channels) per event sent.
   */
  #pumpSink(sink: Sink): void {
    while (this.#sessions.hasRoom(sink)) {
      const order = this.#sessions.fillOrder(sink);
      if (!order.some((channelId) => this.#sendOne(channelId))) return;
    }
  }

  /**
   * Sends the channel's next event to the session of it with the most room (not necessarily
   * the one being filled); false when there is no such event or no such session.
   */
  #sendOne(channelId: string): boolean {
    const q = this.#queues.get(channelId);
    // Idle channels cost O(1): a session's turn passes over them on every ack.
    if (!q || (q.ready.length === 0 && !q.lanes.mayOffer)) return false;
    const channel = this.#channel(channelId);
    if (!channel) return false;
    while (q.ready.length > 0) {
      const id = q.ready.peek()!;
      const summary = this.#store.getEvent(id);
      if (this.#where.get(id) !== 'ready' || !summary || summary.status !== 'queued') {
        q.ready.shift();
        if (this.#where.get(id) === 'ready') this.#where.delete(id);
        continue;
      }
      const sink = this.#sessions.pick(q.sinks, this.#now());
      if (!sink) return false;
      q.ready.shift();
      this.#send(sink, summary, channel);
      return true;
    }
    return this.#sendFromLanes(q, channel);
  }

  /** Ordered channels: the head of the next idle lane that is due, if a session has room. */
  #sendFromLanes(q: ChannelQueue, channel: ChannelRecord): boolean {
    for (;;) {
      const sink = this.#sessions.pick(q.sinks, this.#now());
      if (!sink) return false;
      const next = q.lanes.take();
      if (!next) return false;
      const summary = this.#store.getEvent(next.id);
      const where = this.#where.get(next.id);
      if (where !== undefined && where !== 'lane') continue; // in flight: the key stays held
      if (where !== 'lane' || !summary || summary.status !== 'queued') {
        // Gone or finished meanwhile (removed, skipped): the lane moves on.
        q.lanes.done(next.key, next.id);
        this.#where.delete(next.id);
        continue;
      }
      if (summary.nextAttemptAt > this.#now()) {
        // The head waits for its retry (e.g. after a restart): the key stays held until then.
        this.#timers.push(summary.nextAttemptAt, { channel: channel.id, key: next.key });
        continue;
      }
      this.#send(sink, summary, channel);
      return true;
    }
  }

  #send(sink: Sink, summary: EventSummary, channel: ChannelRecord): void {
    this.#sessions.sent(sink, summary.id, summary.size, this.#now(), channel.id);
    this.#where.set(summary.id, sink);
    this.#store.markDelivering(summary.id, true);
    const attempt = summary.attemptCount + 1;
    // Reads run in parallel (a backlog comes from disk), sends leave in queue order.
    const read = this.#store.readPayload(summary.id);
    read.catch(() => undefined); // handled below, once the sends before it have left
    this.#sessions.inOrder(sink, () =>
      read.then(
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
            skipRoutes: summary.deliveredRoutes,
            replay: summary.replays,
            body: p.body,
          });
        },
        (err: unknown) => {
          this.#log.error(
            { err, eventId: summary.id },
            'cannot read event back from the store; will try again',
          );
          if (this.#where.get(summary.id) !== sink) return;
          this.#sessions.settled(sink, summary.id, summary.size);
          this.#store.markDelivering(summary.id, false);
          this.#where.delete(summary.id);
          this.#giveBack(summary, this.#now() + READ_RETRY_MS);
          this.#pumpSink(sink);
          this.#arm();
        },
      ),
    );
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
    for (const wake of this.#timers.popDue(this.#now())) {
      if ('channel' in wake) {
        this.#releaseLane(wake.channel, wake.key);
        channels.add(wake.channel);
        continue;
      }
      const summary = this.#store.getEvent(wake.event);
      if (this.#where.get(wake.event) !== 'timer' || !summary) continue;
      // A stale wake-up: the event was replayed and rescheduled since this one was set.
      if (summary.nextAttemptAt > this.#now()) continue;
      this.#where.set(wake.event, 'ready');
      this.#queue(summary.channelId).ready.push(wake.event);
      channels.add(summary.channelId);
    }
    for (const channelId of channels) this.#pump(channelId);
    this.#arm();
  }
}
