/**
 * The relay's storage contract: the store owns every event's state; a relay process holds only
 * what it has in flight. Backend-neutral: the embedded store (lowdb + LMDB, embedded.ts)
 * implements it, and a backend shared by several relays (PostgreSQL) implements it as it is.
 * test/store/contract.ts is the suite every backend must pass.
 *
 * Rules every backend keeps:
 * 1. Durable before resolving: `appendEvent`, `updateControl` and a non-lazy `updateEvent`
 *    resolve only once their change survives a crash of the process and of the machine.
 * 2. Visible at once: once a write resolved, every read sees it, whichever relay reads; a lazy
 *    settle is visible to this store's reads at once, and to claims and other relays once it
 *    resolved (a claim does not wait for it: its event stays claimed until then, and the feed
 *    reports work on its channel once it is settled).
 * 3. Work is claimed: dispatch takes events with `claim`; a claimed event is `delivering` and
 *    no other claim gets it until the claim is settled, released or its lease runs out. Each
 *    claim has an epoch, larger than any earlier claim of that event; `settle` and `release`
 *    name it, and one that no longer holds (lease run out, event claimed again, replayed,
 *    skipped, removed) is refused and changes nothing. Claims do not outlive the process that
 *    made them by more than their lease; the embedded store, one relay per data dir, forgets
 *    them all on open.
 * 4. Order per key: on an ordered channel (`ClaimRequest.ordered`) an event is claimed only if
 *    it is the oldest pending event of its ordering key, it is due, and no event of that key is
 *    claimed. Exclusivity is the store's: it holds across relays.
 * 5. Unordered channels: only due events (`nextAttemptAt` <= now) are claimed, and none that
 *    arrived after another became due is claimed before it (a due retry is never overtaken by
 *    newer arrivals, so none starves).
 * 6. The change feed (`subscribe`) reports, after the change is visible: every event added or
 *    changed (live views), work that may be claimable on a channel (a new event, one released,
 *    an event settled back to the queue or replayed, a key freed), and control changes.
 *    Several relays: each gets the changes made by all of them.
 * 7. Reads return copies: changing a returned object changes nothing in the store.
 * 8. Shared between relays: rate-limit buckets (`takeToken`), the app's answers to sync events
 *    (`publishResponse`, reported as `response` to every relay, readable until their deadline)
 *    and which agents each relay holds tunnels for (`putPresence`, reported as `presence` when a
 *    relay's set changes) are one for every relay of the store, so that several relays act as
 *    one: a limit is not multiplied by the number of relays, a provider's request held by one
 *    relay gets the answer of an app reached through another.
 */
import type { HeaderPair } from '../../shared/protocol.ts';

export type VerifyConfig =
  | { provider: 'github'; secret: string; previousSecret?: string }
  | { provider: string; [key: string]: unknown };

export interface ChannelRecord {
  id: string;
  name: string;
  verify: VerifyConfig | null;
  response: { mode: 'async' | 'sync'; timeoutMs: number };
  retry: { delaysMs: number[] };
  ordered: boolean;
  /**
   * With `ordered`: what keeps order, per key (e.g. a repository) instead of for the whole
   * channel; events of different keys are delivered in parallel. Null: one order per channel.
   */
  orderingKey: { header: string } | { jsonField: string } | null;
  /** Ingress rate limit: beyond it, 429 with Retry-After. Null: none. */
  rateLimit: { perSecond: number; burst: number } | null;
  maxBodyBytes: number;
  /**
   * The HTTP methods ingress takes (upper case); others get 405. Null: the provider's own
   * (POST, plus GET for Meta and Twilio) on a verified channel, any on an unverified one.
   */
  methods: string[] | null;
  /**
   * The path suffixes ingress takes: `""` (none), exact (`/push`) or a prefix (`/github/*`);
   * others get 404. Null: any.
   */
  paths: string[] | null;
  createdAt: number;
}

export interface AgentRecord {
  id: string;
  name: string;
  channels: string[];
  /** Ed25519 public key (JWK), set by pairing. */
  publicKey: { kty: 'OKP'; crv: 'Ed25519'; x: string } | null;
  createdAt: number;
  pairedAt: number | null;
  lastSeenAt: number | null;
  version: string | null;
}

export interface PairingRecord {
  /** SHA-256 of the code, hex: the code itself is never stored. */
  codeHash: string;
  agentId: string;
  expiresAt: number;
}

export type EventStatus =
  | 'queued'
  | 'delivering'
  | 'delivered'
  | 'failed'
  | 'rejected'
  /** No route of the agent matched it: done, never delivered, never retried. */
  | 'filtered';

export interface Attempt {
  at: number;
  agentId: string;
  /** `skipped`: an operator moved the event out of the way (it holds an ordered queue). */
  outcome: 'delivered' | 'failed' | 'no_route' | 'filtered' | 'skipped';
  status: number | null;
  durationMs: number;
  error: string | null;
  /** The app's answer, bounded (see MAX_ANSWER_* in shared/protocol.ts); absent when none. */
  response?: AttemptResponse;
  /** The event's replay count when the attempt was made; absent: 0, the original delivery. */
  replay?: number;
}

/** The app's answer to one attempt, as stored and shown. */
export interface AttemptResponse {
  headers: HeaderPair[];
  /** Base64 of the body's first bytes. */
  body: string;
  /** Body bytes the agent read. */
  bodyBytes: number;
  /** Something is not here: the body beyond `body`, or header pairs past the bound. */
  truncated: boolean;
}

/** What ingress captured of one webhook; written once, never changed. */
export interface EventPayload {
  id: string;
  channelId: string;
  receivedAt: number;
  method: string;
  path: string;
  query: string;
  headers: HeaderPair[];
  originalUrl: string;
  remoteAddress: string;
  body: Buffer;
  /** Set for a request refused at the edge: kept as metadata only (empty body). */
  rejected?: { reason: string; size: number };
  /** The ordering key of an ordered channel with `orderingKey` (absent: the channel's one key). */
  orderKey?: string;
  /**
   * Replay protection: a digest of what the provider's signature covered (verified channels
   * only; never on a rejected event). See `Store.findByDedupKey`.
   */
  dedupKey?: string;
  /**
   * Sync channels: the provider's request waits for the app's answer until then (ms since
   * epoch); whichever relay delivers the event asks the agent for the answer and publishes it.
   */
  respondBy?: number;
}

/** A token bucket: `burst` tokens, refilled at `perSecond`. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/** The app's answer to a sync event, carried to the relay that holds the provider's request. */
export interface AppResponse {
  eventId: string;
  /** 0: the attempt brought no answer to pass on (the provider gets 202 at once). */
  status: number;
  headers: HeaderPair[];
  body: Buffer;
}

/** The agents one relay holds live tunnels for, as it last said, valid until `until`. */
export interface Presence {
  owner: string;
  agents: string[];
  until: number;
}

/** An event's metadata and delivery state (what `getEvent` and lists return). */
export interface EventSummary {
  id: string;
  channelId: string;
  status: EventStatus;
  receivedAt: number;
  method: string;
  path: string;
  query: string;
  size: number;
  /** Attempts that consumed the retry budget (failures and the success). */
  attemptCount: number;
  /** The most recent attempts, oldest first, bounded. */
  attempts: Attempt[];
  /** When the next attempt may start (ms since epoch); 0 when due now. */
  nextAttemptAt: number;
  /** Why the edge refused it, for `rejected` events. */
  reason: string | null;
  /** Ordered channels: events with the same key are delivered one at a time, in order. */
  orderKey: string;
  /** Fan-out: the agent's routes that already got it (opaque names; a retry skips them). */
  deliveredRoutes: string[];
  /** How many times an operator replayed it: a replay is delivered again even if it was. */
  replays: number;
}

/** A change to an event's delivery state, appended after each attempt or replay. */
export interface EventUpdate {
  status: EventStatus;
  attemptCount: number;
  nextAttemptAt: number;
  /** The attempt that caused this update, if any. */
  attempt?: Attempt;
  /**
   * Set by a replay: the new replay count. A replay resets the attempts budget and the routes
   * delivered (the log of attempts stays).
   */
  replays?: number;
  /** Replaces the whole attempts log (written when compaction moves an event forward). */
  attempts?: Attempt[];
  /** The routes delivered so far (the whole list), when it changed. */
  deliveredRoutes?: string[];
}

export interface EventFilter {
  channelId?: string;
  status?: EventStatus;
  /** Only events older than this one (cursor). */
  before?: string;
  /** Only events received at or after this time (ms since epoch). */
  since?: number;
  /** Only events received before this time (ms since epoch). */
  until?: number;
  limit: number;
}

/** A listing that also looks into each event's request (`searchEvents`). */
export interface EventSearch extends EventFilter {
  /**
   * An event id (exact: that event alone, when it passes the other filters and no `before` is
   * given), or text looked for, case-insensitively, in the header values and the body (read as
   * UTF-8) of each event.
   */
  text: string;
  /** At most this many events examined (their requests read) before the answer. */
  maxExamined: number;
  /**
   * Stops after the event whose body brings the bytes examined to this many (the events'
   * `size`); 64 MiB when not given. Like `maxExamined`, `next` then goes on from there.
   */
  maxBytes?: number;
}

export interface SearchPage extends ListPage {
  /**
   * How many events were examined. When `maxExamined` or `maxBytes` ran out before `limit`
   * matches, `next` is the last event examined: passed as `before`, the search goes on from there.
   */
  examined: number;
}

/** A tunnel token id already used, kept until the token could no longer be valid. */
export interface UsedTokenId {
  /** `agentId:jti` */
  key: string;
  /** Seconds since epoch after which the token is expired anyway. */
  until: number;
}

export interface ControlState {
  adminTokenHash: string | null;
  channels: ChannelRecord[];
  agents: AgentRecord[];
  pairings: PairingRecord[];
  /** Persisted so that a token cannot be replayed across a relay restart either. */
  usedTokenIds: UsedTokenId[];
}

/** A claim on an event: the right to deliver it until settled, released or its lease ends. */
export interface Claim {
  /** The event as claimed (status `delivering`). */
  event: EventSummary;
  /** Fences the claim: `settle` and `release` of an older epoch are refused. */
  epoch: number;
}

/** Which claim `settle`, `release` name. */
export interface ClaimRef {
  id: string;
  epoch: number;
}

export interface ClaimRequest {
  /** Who claims: one id per relay process (renewals name it). */
  owner: string;
  channelId: string;
  /** The channel's `ordered` setting now: one event per ordering key at a time (rule 4). */
  ordered: boolean;
  /** At most this many claims. */
  limit: number;
  /** The time the claim is made at (ms since epoch): what is due, and the lease's start. */
  now: number;
  /** How long the claim holds without a renewal. */
  leaseMs: number;
}

/** Who claims a new event in its append (`appendClaimed`), and for how long. */
export interface AppendClaim {
  owner: string;
  /** The time of the claim (ms since epoch): due events are those due then; the lease starts. */
  now: number;
  leaseMs: number;
}

/** What `appendClaimed` did: the event (`delivering` when claimed) and its claim's epoch. */
export interface AppendedClaim {
  event: EventSummary;
  /** Null: not claimed (a due event of the channel comes first); the event is queued. */
  epoch: number | null;
}

export interface ClaimResult {
  claims: Claim[];
  /**
   * When something of the channel that is not claimable now may become so without another
   * change being reported (an event waiting for its retry time, a lease running out: of any
   * owner, the claimer's own included), ms since epoch; null when nothing is waiting. A hint:
   * a claim then may still find nothing.
   */
  wakeAt: number | null;
}

export interface SubscribeOptions {
  /** Whether the listener wants `event` changes (default true). */
  events?: boolean;
}

/** What the change feed reports (see rule 6). */
export type StoreChange =
  | { type: 'event'; event: EventSummary }
  | { type: 'work'; channelId: string }
  | { type: 'control' }
  /** An app's answer to a sync event was published (rule 8): `readResponse` has it. */
  | { type: 'response'; eventId: string }
  /** A relay's set of agents with live tunnels changed (rule 8). */
  | { type: 'presence' };

/** Whether the store can be read and written now (readiness). */
export type StoreHealth = 'available' | 'unavailable';

export interface ListPage {
  events: EventSummary[];
  /** The cursor of the next page (`before`), or null at the end. */
  next: string | null;
}

/**
 * One minute of delivery statistics (see minute-stats.ts): kept by the store as events go
 * through, forgotten with the events of that age (retention).
 */
export interface MinuteStats {
  /** The minute's start, ms since epoch. */
  minute: number;
  /** Events appended (not those refused at the edge). */
  received: number;
  /** Settles that delivered an event (a replay's included), in the minute its attempt ended. */
  delivered: number;
  /** Settles that gave an event up (retries exhausted). */
  failed: number;
  /** First deliveries by latency (receivedAt → end of the attempt), one count per bucket. */
  latency: number[];
}

/** Refused requests kept per channel (metadata only); the oldest are forgotten first. */
export const MAX_REJECTED_PER_CHANNEL = 1_000;

export interface Store {
  /**
   * Whether other relays may change this store (PostgreSQL): a relay then looks in the store
   * for an id it does not know yet, rather than answering 404 before the change feed told it.
   */
  readonly shared: boolean;
  /** Opens files or connections, and checks what is there; must be called before anything else. */
  open(): Promise<void>;
  /** Waits for writes under way, then releases files and connections. */
  close(): Promise<void>;
  /**
   * Whether reads and writes can succeed now, for readiness (`/readyz`): `unavailable` while a
   * database cannot be reached, answered within a few seconds; never throws.
   */
  health(): Promise<StoreHealth>;

  // control plane
  /** The control state as stored now (a copy). */
  readControl(): Promise<ControlState>;
  /**
   * Applies `change` to the control state and persists it durably before resolving; returns
   * the new state (a copy). Changes are serialized: `change` sees every earlier one, including
   * other relays'. A `change` that throws changes nothing, and its error is thrown.
   */
  updateControl(change: (state: ControlState) => void): Promise<ControlState>;

  // events
  /**
   * Resolves once the event is durable: only then may ingress answer 2xx. A refused request
   * (`payload.rejected`) is kept as metadata, never delivered, and at most
   * MAX_REJECTED_PER_CHANNEL of them per channel: the oldest go first.
   */
  appendEvent(payload: EventPayload): Promise<EventSummary>;
  /**
   * `appendEvent`, the event claimed in the same write by `claim.owner` (rule 3), for a relay
   * that can send it at once: it saves the claim that would follow, and the read of the body.
   * The claim is refused, the event appended queued as by `appendEvent` (`epoch` null, work
   * reported), when the channel has a due event that is not claimed (rule 5: a new event never
   * overtakes one). Unordered channels only; never for a refused request (`payload.rejected`).
   * Other relays are told of work on the channel either way, so that the claim of a relay that
   * dies is found when its lease runs out.
   */
  appendClaimed(payload: EventPayload, claim: AppendClaim): Promise<AppendedClaim>;
  /**
   * Changes an event's delivery state outside of a claim (replay, skip). With `expect`, only if
   * its status (`delivering` when claimed) is one of them: otherwise ERR_CONFLICT (409),
   * nothing changed. A replay (`update.replays`) ends a claim the event has: its settle is
   * refused. ERR_NOT_FOUND (404) for an unknown event.
   */
  updateEvent(
    id: string,
    update: EventUpdate,
    opts?: { expect?: readonly EventStatus[] },
  ): Promise<EventSummary>;
  getEvent(id: string): Promise<EventSummary | undefined>;
  /** Reads headers and body back. ERR_NOT_FOUND (404) for an unknown event. */
  readPayload(id: string): Promise<EventPayload>;
  /**
   * Newest first, by `channelId` and `status` when given, older than `before` (a cursor from a
   * page before; ERR_BAD_REQUEST, 400, when it names no event), received in `[since, until)`
   * when given; at most `limit`. The embedded store bounds a time range by the ids' time (event
   * ids are ULIDs of their arrival, see ids.ts) give or take a minute, then by `receivedAt`.
   */
  listEvents(filter: EventFilter): Promise<ListPage>;
  /**
   * Like `listEvents`, keeping the events that match `search.text` (see EventSearch), newest
   * first; examines at most `search.maxExamined` events.
   */
  searchEvents(search: EventSearch): Promise<SearchPage>;
  /** Events by status (`delivering`: claimed), for metrics and readiness. */
  countByStatus(): Promise<Record<EventStatus, number>>;
  /**
   * Replay protection: the id of an event of `channelId` appended with this `dedupKey` and
   * received at or after `since` (ms), or undefined. Holds across restarts for keys of the last
   * day at least; a key is visible once its `appendEvent` resolved; callers serialize identical
   * requests in flight themselves.
   */
  findByDedupKey(channelId: string, dedupKey: string, since: number): Promise<string | undefined>;
  /**
   * Retention: forgets delivered, failed, filtered and rejected events received before
   * `cutoff`, and reclaims their space. Pending events are never removed. Returns how many went.
   */
  removeFinishedBefore(cutoff: number): Promise<number>;

  // dispatch
  /** Claims up to `limit` events of a channel that may be delivered now (rules 3 to 5). */
  claim(request: ClaimRequest): Promise<ClaimResult>;
  /**
   * Records the outcome of a claimed event's attempt and ends the claim; null, changing
   * nothing, when the claim no longer holds. The promise resolves once the outcome is durable;
   * a `lazy` one is visible at once, may wait a little for company, and need not be durable
   * when its promise resolves: losing it in a crash only means the event is offered again.
   */
  settle(
    claim: ClaimRef,
    update: EventUpdate,
    opts?: { lazy?: boolean },
  ): Promise<EventSummary | null>;
  /**
   * Ends a claim without an attempt (the session ended, the body could not be read): the
   * event is pending again, due at `notBefore` (default: now). False when the claim no longer
   * holds.
   */
  release(claim: ClaimRef, opts?: { notBefore?: number }): Promise<boolean>;
  /**
   * Extends the named claims of `owner` that still hold (same id and epoch, lease not run out)
   * to `now + leaseMs`; returns how many. Only the claims named: one whose answer never reached
   * its owner (a connection lost after the commit) is not renewed and runs out by itself.
   */
  renewClaims(
    owner: string,
    claims: readonly ClaimRef[],
    now: number,
    leaseMs: number,
  ): Promise<number>;
  /**
   * Calls `listener` with each change (rule 6); returns an unsubscribe. `events: false`: not
   * the `event` changes (dispatch and caches want work and control only); a store shared by
   * several relays reads other relays' changed events only while a listener wants them.
   */
  subscribe(listener: (change: StoreChange) => void, opts?: SubscribeOptions): () => void;

  // shared between relays (rule 8)
  /**
   * Takes one token from bucket `key` (full when first used, refilled at `limit.perSecond` up
   * to `limit.burst`): 0 when taken, else the ms until one is available (nothing taken). One
   * bucket for every relay. Idle buckets are forgotten once they would be full again.
   */
  takeToken(key: string, limit: RateLimit, now: number): Promise<number>;
  /**
   * Publishes the app's answer to a sync event for the relay holding the provider's request;
   * kept until `until` (the provider's deadline), then forgotten. The feed reports `response`.
   */
  publishResponse(response: AppResponse, until: number): Promise<void>;
  /** The answer published for an event and not yet past its deadline, or undefined. */
  readResponse(eventId: string, now: number): Promise<AppResponse | undefined>;
  /**
   * Says which agents `owner` (one relay) holds live tunnels for, until `until` unless said
   * again; an empty list, or the time passing, withdraws it. The feed reports `presence` when
   * the set changed.
   */
  putPresence(owner: string, agents: readonly string[], until: number): Promise<void>;
  /** Every relay's presence still valid at `now`. */
  readPresence(now: number): Promise<Presence[]>;

  // statistics
  /**
   * The minutes starting at or after `since` and before `until` that have something, oldest
   * first, as of every write that resolved (every relay's). Retention forgets minutes before
   * its cutoff.
   */
  minuteStats(range: { since: number; until: number }): Promise<MinuteStats[]>;
}
