/**
 * The relay's storage contract. Backend-neutral: the embedded store (lowdb + LMDB) implements
 * it today; a clustered backend (PostgreSQL) can implement it later.
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
}

/** An event's metadata and delivery state, kept in memory by the embedded store. */
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
  limit: number;
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

export interface Store {
  /** Reads everything from disk; must be called before anything else. */
  open(): Promise<void>;
  /** Waits for in-flight commits, then releases files. */
  close(): Promise<void>;

  // control plane
  control(): Readonly<ControlState>;
  /** Applies `change` to the control state and persists it durably before resolving. */
  updateControl(change: (state: ControlState) => void): Promise<void>;

  // events
  /** Resolves once the event is written and fsynced: only then may ingress answer 2xx. */
  appendEvent(payload: EventPayload): Promise<EventSummary>;
  /**
   * Records a delivery-state change, visible at once; durable before it resolves. A `lazy`
   * change waits a little for another commit to ride along with, and may be lost in a crash:
   * use it only where losing it is safe (a delivery outcome: the event is then simply offered
   * again).
   */
  updateEvent(id: string, update: EventUpdate, opts?: { lazy?: boolean }): Promise<EventSummary>;
  getEvent(id: string): EventSummary | undefined;
  /**
   * Replay protection: the id of an event of `channelId` appended with this `dedupKey` and
   * received at or after `since` (ms), or undefined. Holds across restarts for keys of the last
   * day at least; bounded (the embedded store keeps at most MAX_DEDUP_KEYS, oldest forgotten
   * first), so a very old key may be forgotten early. A key is visible once its
   * `appendEvent` resolved; callers serialize identical requests in flight themselves.
   */
  findByDedupKey(channelId: string, dedupKey: string, since: number): Promise<string | undefined>;
  /** Marks an event as handed to an agent, or back in the queue. Not persisted: after a
   * restart nothing is in flight, so `delivering` events are read back as `queued`. */
  markDelivering(id: string, delivering: boolean): void;
  /** Reads headers and body back (from memory when still cached, else from disk). */
  readPayload(id: string): Promise<EventPayload>;
  listEvents(filter: EventFilter): { events: EventSummary[]; next: string | null };
  /** Events not yet delivered or failed, oldest first: what dispatch must still do. */
  pendingEvents(): EventSummary[];
  /** Events by status, for metrics and readiness. */
  countByStatus(): Record<EventStatus, number>;
  /** Calls `listener` with an event each time it is added or changes state; returns an unsubscribe. */
  subscribe(listener: (event: EventSummary) => void): () => void;
  /**
   * Retention: forgets delivered, failed and rejected events received before `cutoff`, then
   * reclaims the disk they used. Queued events are never removed. Returns how many went.
   */
  removeFinishedBefore(cutoff: number): Promise<number>;
}
