/**
 * Dispatch: which event goes to which tunnel session, and when.
 *
 * The store owns every event's state and hands out work by claims (see store/types.ts): a
 * claim is the right to deliver an event until its outcome is settled; the store keeps
 * ordered channels to one event per ordering key at a time and knows what is due. This
 * process holds only what it has in flight: its claims, by session. A session takes events of
 * the channels its agent is granted while it has room in its window; room freed by an ack goes
 * first to the channel with work that has the fewest events in flight on the session (ties in
 * turn), so that a busy or slow channel cannot starve the others. With several agents on a
 * channel, each event goes to one of them, the one with the most room, and an agent whose
 * deliveries keep failing while another's succeed is benched for a while. Each `deliver` is
 * one attempt; the agent's `ack` decides what happens next (the relay owns the schedule).
 * Waiting for an agent consumes no attempt.
 *
 * What may be claimable is learnt from the store's change feed (`work`), from the time a
 * claim says something will become due (`wakeAt`), and from room freed in a window. Channel
 * settings apply at once: the next claim is made by the settings of that moment.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentFrame } from '../../shared/protocol.ts';
import { PosternError } from '../../shared/errors.ts';
import type {
  AppendClaim,
  AppendedClaim,
  AppResponse,
  ChannelRecord,
  Claim,
  ClaimRef,
  EventPayload,
  EventSummary,
  Store,
  StoreChange,
} from '../store/types.ts';
import { Sessions, type Sink } from './sessions.ts';
import { afterAttempt } from './retry.ts';

/** Queued events of a channel looked at for a parked `no_route` when an agent connects. */
const UNPARK_SCAN_LIMIT = 10_000;
const UNPARK_PAGE = 500;

export type AckFrame = Extract<AgentFrame, { type: 'ack' }>;

/** When an event's body cannot be read back, look again after this long. */
const READ_RETRY_MS = 30_000;
/** How long a claim holds without renewal; renewed every third of it while in flight. */
export const LEASE_MS = 30_000;
/** Most events one claim takes. */
const CLAIM_BATCH = 64;
/** After a failed claim (the store unavailable), try the channel again after this long. */
const CLAIM_RETRY_MS = 1_000;

/** A settle or release on its way to the store (see `#unrecorded`). */
interface Unrecorded {
  ref: ClaimRef;
  write: () => Promise<unknown>;
  /** Refused once: `#recordAgain` runs it again. */
  failed: boolean;
}

/** A claim of this process: the event as claimed, and the session it was sent on. */
interface InFlight {
  sink: Sink;
  epoch: number;
  event: EventSummary;
  /** A sync event's deadline (from its payload, once read): its answer is wanted until then. */
  respondBy?: number;
}

/** Room held in a session for an event ingress is appending (see `Dispatcher.reserve`). */
export interface Reservation {
  readonly channelId: string;
  readonly sink: Sink;
  /** What ingress passes to `Store.appendClaimed`. */
  readonly claim: AppendClaim;
}

/** The app's answer an ack carries, if it carries one. */
function answerOf(frame: AckFrame): AppResponse | null {
  if (frame.status === undefined || !frame.responseHeaders || !frame.body) return null;
  return {
    eventId: frame.eventId,
    status: frame.status,
    headers: frame.responseHeaders,
    body: Buffer.from(frame.body.buffer, frame.body.byteOffset, frame.body.byteLength),
  };
}

interface ChannelState {
  readonly sinks: Set<Sink>;
  /** Nothing claimable at the last claim, and nothing reported since. */
  dry: boolean;
  /** Changes reported: a claim that started before one cannot conclude the channel is dry. */
  generation: number;
  wake: { at: number; timer: NodeJS.Timeout } | null;
}

export interface DispatcherDeps {
  store: Store;
  logger: Logger;
  channel: (id: string) => ChannelRecord | undefined;
  now?: () => number;
  random?: () => number;
  /** Told of every attempt's outcome, and of the receipt-to-delivery time of delivered ones. */
  onAttempt?: (outcome: AckFrame['outcome'], deliveredAfterMs: number | null) => void;
  /** How long claims hold without renewal (default LEASE_MS). */
  leaseMs?: number;
}

export class Dispatcher {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #channel: (id: string) => ChannelRecord | undefined;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #onAttempt: NonNullable<DispatcherDeps['onAttempt']>;
  readonly #leaseMs: number;
  /** This process, as the owner of its claims. */
  readonly #owner = `relay-${randomUUID()}`;
  readonly #sessions = new Sessions();
  readonly #sinks = new Set<Sink>();
  readonly #channels = new Map<string, ChannelState>();
  readonly #inflight = new Map<string, InFlight>();
  /**
   * Settles and releases not yet taken by the store, by event id: under way, or refused (the
   * database away, `failed`) and tried again every CLAIM_RETRY_MS until they go through. Their
   * claims are still this relay's and are renewed meanwhile, so no other relay delivers them
   * before the outcome is recorded.
   */
  readonly #unrecorded = new Map<string, Unrecorded>();
  #retryTimer: NodeJS.Timeout | null = null;
  /** Channels being unparked (see `#unpark`), with whether another scan was asked for. */
  readonly #unparking = new Map<string, boolean>();
  /** Ingress requests of sync channels waiting for the app's response, by event id. */
  readonly #responseWaiters = new Map<string, (answer: AppResponse | null) => void>();
  #unsubscribe: () => void = () => undefined;
  #renewal: NodeJS.Timeout | null = null;
  #scheduled = false;
  #running = false;
  #again = false;
  #stopped = false;

  constructor(deps: DispatcherDeps) {
    this.#store = deps.store;
    this.#log = deps.logger;
    this.#channel = deps.channel;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#onAttempt = deps.onAttempt ?? (() => undefined);
    this.#leaseMs = deps.leaseMs ?? LEASE_MS;
  }

  /** Listens to the store's changes and keeps this process's claims alive. */
  start(): void {
    this.#stopped = false;
    this.#unsubscribe = this.#store.subscribe((change) => this.#changed(change), {
      events: false,
    });
    this.#renewal = setInterval(() => this.#renew(), Math.max(1, Math.floor(this.#leaseMs / 3)));
    this.#renewal.unref();
  }

  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    if (this.#renewal) clearInterval(this.#renewal);
    this.#renewal = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    for (const state of this.#channels.values()) if (state.wake) clearTimeout(state.wake.timer);
  }

  #changed(change: StoreChange): void {
    if (change.type === 'work') this.#mayHaveWork(change.channelId);
    else if (change.type === 'response' && this.#responseWaiters.has(change.eventId)) {
      this.#readAnswer(change.eventId);
    }
  }

  /** An answer published through the store (another relay delivered the event): hand it on. */
  #readAnswer(eventId: string): void {
    this.#store.readResponse(eventId, this.#now()).then(
      (answer) => {
        if (answer) this.#responseWaiters.get(eventId)?.(answer.status === 0 ? null : answer);
      },
      (err: unknown) => this.#log.warn({ err, eventId }, 'could not read an app answer'),
    );
  }

  /**
   * Renews the claims this process knows it holds, and only those: a claim whose answer was
   * lost (the database connection reset after its commit) runs out and is claimed again.
   */
  #renew(): void {
    const refs: ClaimRef[] = [];
    for (const [id, held] of this.#inflight) refs.push({ id, epoch: held.epoch });
    for (const { ref } of this.#unrecorded.values()) refs.push(ref);
    if (refs.length === 0) return;
    this.#store.renewClaims(this.#owner, refs, this.#now(), this.#leaseMs).catch((err: unknown) => {
      this.#log.error({ err }, 'could not renew claims; deliveries may be offered twice');
    });
  }

  /** Whether some connected session can take this channel's events now or soon. */
  hasSink(channelId: string): boolean {
    const state = this.#channels.get(channelId);
    if (!state) return false;
    for (const sink of state.sinks) if (sink.open) return true;
    return false;
  }

  /**
   * For sync channels: resolves with the app's answer to the event's next attempt, whichever
   * relay delivers it (an answer delivered through another relay comes through the store), or
   * null when the attempt brought none or after `timeoutMs`. The event stays queued either way.
   */
  awaitResponse(eventId: string, timeoutMs: number): Promise<AppResponse | null> {
    const answered = new Promise<AppResponse | null>((resolve) => {
      const timer = setTimeout(() => {
        this.#responseWaiters.delete(eventId);
        resolve(null);
      }, timeoutMs);
      this.#responseWaiters.set(eventId, (answer) => {
        clearTimeout(timer);
        this.#responseWaiters.delete(eventId);
        resolve(answer);
      });
    });
    // Published before this wait began (another relay was quick): read it now.
    this.#readAnswer(eventId);
    return answered;
  }

  attach(sink: Sink): void {
    this.#sessions.attach(sink);
    this.#sinks.add(sink);
    for (const channelId of sink.channels) this.#state(channelId).sinks.add(sink);
    for (const channelId of sink.channels) this.#mayHaveWork(channelId);
    // A new session may bring the route that was missing (an agent restarted with new routes,
    // another agent granted the channel): what waits for one goes now, not at its parked time.
    for (const channelId of sink.channels) this.#unpark(channelId);
  }

  /**
   * Room for a new event of the channel in one of this relay's sessions, held until `handOff`
   * or `cancel`. With it, ingress appends the event claimed (`Store.appendClaimed`) and hands
   * it over once stored: no claim, no read of the body back, no wait for the feed. Only for an
   * unordered channel, and only room no other channel of the session waits for (each of them
   * found with nothing to claim, nothing reported since): the room freed by acks still goes
   * to the channel that has waited least. The store refuses the claim while the channel has an
   * event waiting, so a new one never goes first. Null: appended and claimed as usual.
   */
  reserve(channelId: string): Reservation | null {
    const channel = this.#channel(channelId);
    const state = this.#channels.get(channelId);
    if (this.#stopped || !channel || channel.ordered || !state) return null;
    const sink = this.#pickFor(channelId);
    if (!sink || this.#sessions.room(sink) === 0) return null;
    const waits = (c: string) => c !== channelId && this.#channels.get(c)?.dry === false;
    if (sink.channels.some(waits)) return null;
    this.#sessions.reserve(sink);
    const claim = { owner: this.#owner, now: this.#now(), leaseMs: this.#leaseMs };
    return { channelId, sink, claim };
  }

  /**
   * The event of a reservation is stored: sent now if it was claimed in its append (to the
   * session reserved, or another with room; released to be offered again if none is left).
   * Returns whether it was sent.
   */
  handOff(reservation: Reservation, appended: AppendedClaim, payload: EventPayload): boolean {
    this.#sessions.unreserve(reservation.sink);
    // Queued behind an event that waits: a claim takes it, after that one.
    if (appended.epoch === null) return false;
    const claim = { event: appended.event, epoch: appended.epoch };
    const { channelId } = reservation;
    const channel = this.#channel(channelId);
    const sink =
      this.#sessions.room(reservation.sink) > 0 ? reservation.sink : this.#pickFor(channelId);
    if (this.#stopped || !channel || !sink) {
      this.#release(claim);
      return false;
    }
    this.#send(sink, claim, channel, payload);
    return true;
  }

  /** The session a new event of the channel would go to now (see Sessions.pick). */
  #pickFor(channelId: string): Sink | undefined {
    const sinks = this.#sessions.routable(this.#state(channelId).sinks, channelId);
    return this.#sessions.pick(sinks, this.#now());
  }

  /** The event of a reservation was not stored: the room is free again. */
  cancel(reservation: Reservation): void {
    this.#sessions.unreserve(reservation.sink);
    this.#schedule();
  }

  /** The agent a claim of this process sent the event to, while it is in flight. */
  deliveringBy(eventId: string): string | undefined {
    return this.#inflight.get(eventId)?.sink.agentId;
  }

  /**
   * Makes the channel's events parked after a `no_route` attempt due now (no attempt used).
   * One scan per channel at a time; one asked for meanwhile runs after it.
   */
  #unpark(channelId: string): void {
    if (this.#unparking.has(channelId)) {
      this.#unparking.set(channelId, true);
      return;
    }
    this.#unparking.set(channelId, false);
    this.#unparkChannel(channelId)
      .catch((err: unknown) =>
        this.#log.warn({ err, channelId }, 'could not make events waiting for a route due'),
      )
      .finally(() => {
        const again = this.#unparking.get(channelId) === true;
        this.#unparking.delete(channelId);
        if (again && !this.#stopped) this.#unpark(channelId);
      });
  }

  async #unparkChannel(channelId: string): Promise<void> {
    const now = this.#now();
    let before: string | undefined;
    let moved = 0;
    for (let read = 0; read < UNPARK_SCAN_LIMIT && !this.#stopped; read += UNPARK_PAGE) {
      const page = await this.#store.listEvents({
        channelId,
        status: 'queued',
        limit: UNPARK_PAGE,
        ...(before === undefined ? {} : { before }),
      });
      const parked = page.events.filter(
        (e) => e.nextAttemptAt > now && e.attempts.at(-1)?.outcome === 'no_route',
      );
      const done = await Promise.allSettled(
        parked.map((e) =>
          this.#store.updateEvent(
            e.id,
            { status: 'queued', attemptCount: e.attemptCount, nextAttemptAt: 0 },
            { expect: ['queued'] },
          ),
        ),
      );
      // A conflict is an event claimed or replayed meanwhile: nothing to do for it.
      moved += done.filter((d) => d.status === 'fulfilled').length;
      if (page.next === null) break;
      before = page.next;
    }
    if (moved > 0)
      this.#log.info({ channelId, events: moved }, 'events waiting for a route are due now');
  }

  /** The session ended: everything it had not acknowledged is released to be offered again. */
  detach(sink: Sink): void {
    this.#sinks.delete(sink);
    for (const id of this.#sessions.detach(sink)) {
      const held = this.#inflight.get(id);
      if (held?.sink !== sink) continue;
      this.#inflight.delete(id);
      this.#release(held);
    }
    for (const channelId of sink.channels) this.#state(channelId).sinks.delete(sink);
    this.#schedule();
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
    const held = this.#inflight.get(frame.eventId);
    if (held?.sink !== sink) {
      this.#log.warn(
        { agentId: sink.agentId, eventId: frame.eventId },
        'ack for an event not in flight on this session; ignored',
      );
      return;
    }
    this.#inflight.delete(frame.eventId);
    const summary = held.event;
    const waiter = this.#responseWaiters.get(frame.eventId);
    if (waiter) waiter(answerOf(frame));
    else if (held.respondBy !== undefined && held.respondBy > this.#now()) {
      // The provider's request may wait on another relay: the answer goes there through the
      // store, or word that there is none (so that it answers 202 now, not at the deadline).
      const none = { eventId: frame.eventId, status: 0, headers: [], body: Buffer.alloc(0) };
      this.#publish(answerOf(frame) ?? none, held.respondBy);
    }
    this.#sessions.settled(sink, frame.eventId, summary.size);
    const now = this.#now();
    this.#sessions.judge(sink, frame.outcome, now);
    this.#onAttempt(frame.outcome, frame.outcome === 'delivered' ? now - summary.receivedAt : null);
    const delaysMs = this.#channel(summary.channelId)?.retry.delaysMs ?? [];
    const update = afterAttempt(summary, frame, sink.agentId, delaysMs, now, this.#random);
    if (frame.outcome === 'no_route') {
      this.#sessions.markNoRoute(sink, summary.channelId);
      // Another agent of the channel may have the route: then it goes there now, not in 30 s.
      const sinks = this.#state(summary.channelId).sinks;
      const other = [...sinks].some(
        (s) => s.open && !this.#sessions.lacksRoute(s, summary.channelId),
      );
      if (other) update.nextAttemptAt = now;
    }
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
    const ref = { id: summary.id, epoch: held.epoch };
    this.#record(ref, ids, () =>
      this.#store.settle(ref, update, { lazy: true }).then((settled) => {
        if (settled === null) {
          this.#log.warn(
            ids,
            'outcome of a claim that no longer holds (its lease ran out, or it was replayed); not recorded',
          );
        }
      }),
    );
    // Back in the queue: look again at its retry time (the store reports it once committed).
    if (update.status === 'queued') this.#wakeAt(summary.channelId, update.nextAttemptAt);
    // The room freed goes to the session's channels (see #run).
    this.#schedule();
  }

  #publish(answer: AppResponse, until: number): void {
    this.#store.publishResponse(answer, until).catch((err: unknown) => {
      this.#log.warn(
        { err, eventId: answer.eventId },
        "could not publish the app's answer; the provider gets 202",
      );
    });
  }

  /** A channel's settings changed: the next claims follow the new ones. */
  channelChanged(channelId: string): void {
    this.#mayHaveWork(channelId);
  }

  /**
   * Moves an event out of the way now, as `failed` (it can be replayed later): the operator's
   * way to unblock an ordered channel held by a failing event. Not while it is in flight.
   */
  async skip(id: string): Promise<EventSummary> {
    const summary = await this.#store.getEvent(id);
    if (!summary) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    if (summary.status !== 'queued') {
      throw new PosternError('ERR_CONFLICT', `event ${id} is ${summary.status}, not queued`, {
        status: 409,
      });
    }
    return this.#store.updateEvent(
      id,
      {
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
          ...(summary.replays > 0 ? { replay: summary.replays } : {}),
        },
      },
      { expect: ['queued'] },
    );
  }

  /** Queues an event again with a fresh retry budget (same event id). */
  async replay(id: string): Promise<EventSummary> {
    const summary = await this.#store.getEvent(id);
    if (!summary) throw new PosternError('ERR_NOT_FOUND', `no event ${id}`, { status: 404 });
    if (summary.status === 'rejected') {
      throw new PosternError(
        'ERR_CONFLICT',
        `event ${id} was rejected at the edge and has no body to deliver`,
        { status: 409 },
      );
    }
    if (summary.status === 'delivering') {
      throw new PosternError('ERR_CONFLICT', `event ${id} is being delivered right now`, {
        status: 409,
      });
    }
    return this.#store.updateEvent(
      id,
      { status: 'queued', attemptCount: 0, nextAttemptAt: 0, replays: summary.replays + 1 },
      { expect: ['queued', 'delivered', 'failed', 'filtered'] },
    );
  }

  /** Forgets a deleted channel; its events stay in the store. */
  forgetChannel(channelId: string): void {
    const state = this.#channels.get(channelId);
    if (state?.wake) clearTimeout(state.wake.timer);
    if (state && state.sinks.size === 0) this.#channels.delete(channelId);
  }

  #state(channelId: string): ChannelState {
    let state = this.#channels.get(channelId);
    if (!state) {
      state = { sinks: new Set(), dry: false, generation: 0, wake: null };
      this.#channels.set(channelId, state);
    }
    return state;
  }

  /** Something of the channel may be claimable now. */
  #mayHaveWork(channelId: string): void {
    const state = this.#state(channelId);
    state.dry = false;
    state.generation++;
    this.#schedule();
  }

  /** Runs the fill soon, once for every change reported in between. */
  #schedule(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    // After the current I/O callbacks: an ingress request waiting for its app's response has
    // registered by then, and acks arriving together are served by one claim.
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#running) {
        this.#again = true;
        return;
      }
      this.#running = true;
      this.#run()
        .catch((err: unknown) => this.#log.error({ err }, 'dispatch failed; will try again'))
        .finally(() => {
          this.#running = false;
          if (this.#again) {
            this.#again = false;
            this.#schedule();
          }
        });
    });
  }

  /** Fills every session's room until nothing more can be sent. */
  async #run(): Promise<void> {
    for (let progressed = true; progressed && !this.#stopped;) {
      progressed = false;
      for (const sink of [...this.#sinks]) {
        if (await this.#fillSink(sink)) progressed = true;
      }
    }
  }

  /**
   * Fills one session's room: an equal share for each of its channels that may have work, the
   * remainder to the first in its fill order; a channel found to have nothing leaves its share
   * to the others. Returns whether anything was sent.
   */
  async #fillSink(sink: Sink): Promise<boolean> {
    let sent = false;
    for (;;) {
      const room = this.#sessions.room(sink);
      if (room === 0) return sent;
      const order = this.#sessions.fillOrder(sink).filter((c) => !this.#state(c).dry);
      if (order.length === 0) return sent;
      let progressed = false;
      for (const [i, channelId] of order.entries()) {
        const share = Math.floor(room / order.length) + (i < room % order.length ? 1 : 0);
        const max = Math.min(share, this.#sessions.room(sink));
        if (max === 0) continue;
        if ((await this.#fill(sink, channelId, max)) > 0) sent = progressed = true;
        else if (this.#state(channelId).dry) progressed = true; // its share goes to the others
      }
      if (!progressed) return sent;
    }
  }

  /**
   * Claims up to `max` events of the channel for the room of `sink` (held while the claim is
   * under way: events ingress hands over meanwhile do not take it) and sends each to the
   * session with most room.
   */
  async #fill(sink: Sink, channelId: string, max: number): Promise<number> {
    const state = this.#state(channelId);
    const channel = this.#channel(channelId);
    const sinks = this.#sessions.routable(state.sinks, channelId);
    if (!channel || state.dry || !this.#sessions.pick(sinks, this.#now())) return 0;
    const generation = state.generation;
    const limit = Math.min(max, CLAIM_BATCH);
    const now = this.#now();
    let result;
    this.#sessions.reserve(sink, limit);
    try {
      result = await this.#store.claim({
        owner: this.#owner,
        channelId,
        ordered: channel.ordered,
        limit,
        now,
        leaseMs: this.#leaseMs,
      });
    } catch (err) {
      this.#sessions.unreserve(sink, limit);
      this.#log.error({ err, channelId }, 'could not claim events; will try again');
      state.dry = true;
      this.#wakeAt(channelId, now + CLAIM_RETRY_MS);
      return 0;
    }
    this.#sessions.unreserve(sink, limit);
    if (result.claims.length < limit && state.generation === generation) state.dry = true;
    if (result.wakeAt !== null) this.#wakeAt(channelId, result.wakeAt);
    let sent = 0;
    for (const claim of result.claims) {
      const to = this.#sessions.pick(sinks, this.#now());
      if (to) {
        this.#send(to, claim, channel);
        sent++;
      } else {
        // The room went meanwhile (a session ended): the event is offered again.
        this.#release(claim);
      }
    }
    return sent;
  }

  /** Looks at the channel again at `at` (the earliest wake-up asked for wins). */
  #wakeAt(channelId: string, at: number): void {
    const state = this.#state(channelId);
    if (state.wake && state.wake.at <= at) return;
    if (state.wake) clearTimeout(state.wake.timer);
    const delay = Math.min(Math.max(0, at - this.#now()), 2 ** 31 - 1);
    const timer = setTimeout(() => {
      state.wake = null;
      this.#mayHaveWork(channelId);
    }, delay);
    timer.unref();
    state.wake = { at, timer };
  }

  /** Gives a claim back without an attempt, to be offered again (at `notBefore`). */
  #release(held: { event: EventSummary; epoch: number }, notBefore?: number): void {
    const ref = { id: held.event.id, epoch: held.epoch };
    const opts = notBefore === undefined ? {} : { notBefore };
    const ids = { eventId: ref.id, channelId: held.event.channelId };
    this.#record(ref, ids, () => this.#store.release(ref, opts));
  }

  /**
   * Runs a settle or release; one the store refuses (the database away) is kept and tried
   * again until it goes through, so that the claim ends with the outcome recorded.
   */
  #record(ref: ClaimRef, ids: Record<string, string>, write: () => Promise<unknown>): void {
    const entry: Unrecorded = { ref, write, failed: false };
    this.#unrecorded.set(ref.id, entry);
    write().then(
      () => this.#recorded(entry),
      (err: unknown) => {
        this.#log.error({ ...ids, err }, 'could not record a delivery outcome; will try again');
        entry.failed = true;
        this.#retryTimer ??= setTimeout(() => void this.#recordAgain(), CLAIM_RETRY_MS);
        this.#retryTimer.unref();
      },
    );
  }

  #recorded(entry: Unrecorded): void {
    if (this.#unrecorded.get(entry.ref.id) === entry) this.#unrecorded.delete(entry.ref.id);
  }

  async #recordAgain(): Promise<void> {
    let left = false;
    for (const entry of [...this.#unrecorded.values()]) {
      if (!entry.failed) continue;
      if (this.#stopped) break;
      try {
        await entry.write();
        this.#recorded(entry);
      } catch {
        left = true;
        break; // still away: the rest waits too
      }
    }
    this.#retryTimer = null;
    if (left && !this.#stopped) {
      this.#retryTimer = setTimeout(() => void this.#recordAgain(), CLAIM_RETRY_MS);
      this.#retryTimer.unref();
    } else {
      this.#schedule();
    }
  }

  /** Sends a claimed event; its body is read from the store unless given. */
  #send(sink: Sink, claim: Claim, channel: ChannelRecord, payload?: EventPayload): void {
    const summary = claim.event;
    const held: InFlight = { sink, epoch: claim.epoch, event: summary };
    this.#sessions.sent(sink, summary.id, summary.size, this.#now(), channel.id);
    this.#inflight.set(summary.id, held);
    const attempt = summary.attemptCount + 1;
    // Reads run in parallel (a backlog comes from disk), sends leave in claim order.
    const read = payload ? Promise.resolve(payload) : this.#store.readPayload(summary.id);
    read.catch(() => undefined); // handled below, once the sends before it have left
    this.#sessions.inOrder(sink, () =>
      read.then(
        (p) => {
          if (!sink.open || this.#inflight.get(summary.id) !== held) return;
          if (p.respondBy !== undefined) held.respondBy = p.respondBy;
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
            wantResponse: this.#responseWaiters.has(p.id) || (p.respondBy ?? 0) > this.#now(),
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
          if (this.#inflight.get(summary.id) !== held) return;
          this.#inflight.delete(summary.id);
          this.#sessions.settled(sink, summary.id, summary.size);
          this.#release(held, this.#now() + READ_RETRY_MS);
          this.#schedule();
        },
      ),
    );
  }
}
