/**
 * What the store contract suite shares: the backend under test, a fake clock, payload and
 * update factories, and assertions on stable error codes.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type {
  AgentRecord,
  Attempt,
  ChannelRecord,
  Claim,
  ClaimRef,
  ClaimRequest,
  EventPayload,
  EventStatus,
  EventSummary,
  EventUpdate,
  Store,
  StoreChange,
} from '../../../server/store/types.ts';
import { PosternError, type ErrorCode } from '../../../shared/errors.ts';

/** One store under test, on its own data. */
export interface BackendInstance {
  /** Opened and empty. */
  store: Store;
  /** Closes the store and opens a new instance on the same data. */
  reopen(): Promise<Store>;
  /** Closes the current instance and removes all of its data. */
  destroy(): Promise<void>;
}

export interface Backend {
  create(): Promise<BackendInstance>;
  /**
   * Whether a claim made before `reopen` still holds after it (until its lease runs out). The
   * embedded store, one relay per data dir, forgets every claim on open (rule 3).
   */
  claimsSurviveReopen: boolean;
}

/** The fake clock: every claim, lease and retry time is an offset from it. */
export const START = 1_700_000_000_000;
/** Events arrive in the hour before START, so every new event is due at START. */
export const RECEIVED = START - 3_600_000;
/** Long enough that no lease runs out in a test unless the test moves `now` past it. */
export const LEASE_MS = 60_000;

export { STATUSES as ALL_STATUSES } from '../../../server/store/records.ts';

/** A fresh store for one test, destroyed after it. `store` follows reopens. */
export interface Harness {
  store: Store;
  reopen(): Promise<Store>;
}

export async function fresh(t: TestContext, backend: Backend): Promise<Harness> {
  const instance = await backend.create();
  t.after(() => instance.destroy());
  const harness: Harness = {
    store: instance.store,
    async reopen() {
      harness.store = await instance.reopen();
      return harness.store;
    },
  };
  return harness;
}

export function eventId(i: number): string {
  return `evt_${String(i).padStart(26, '0')}`;
}

export interface PayloadOptions {
  channelId?: string;
  orderKey?: string;
  dedupKey?: string;
  receivedAt?: number;
}

/** Event `i`: ids and arrival times grow with `i`, so a larger `i` is newer. */
export function payload(i: number, opts: PayloadOptions = {}): EventPayload {
  const channelId = opts.channelId ?? 'ch_a';
  const p: EventPayload = {
    id: eventId(i),
    channelId,
    receivedAt: opts.receivedAt ?? RECEIVED + i * 10,
    method: 'POST',
    path: `/push/${i}`,
    query: i % 2 === 0 ? `n=${i}&x=%ZZ` : '',
    headers: [
      ['Content-Type', 'application/json'],
      ['X-Dup', 'a'],
      ['x-dup', 'b'],
      ['X-Empty', ''],
    ],
    originalUrl: `https://relay.example.com/h/${channelId}/push/${i}`,
    remoteAddress: '203.0.113.9',
    body: Buffer.concat([Buffer.from(`{"n":${i}}`), Buffer.from([0xff, 0x00, 0x80, 0x0d, 0x0a])]),
  };
  if (opts.orderKey !== undefined) p.orderKey = opts.orderKey;
  if (opts.dedupKey !== undefined) p.dedupKey = opts.dedupKey;
  return p;
}

/** A request refused at the edge: metadata only. */
export function rejectedPayload(i: number, opts: PayloadOptions = {}): EventPayload {
  return {
    ...payload(i, opts),
    body: Buffer.alloc(0),
    rejected: { reason: 'signature mismatch', size: 1234 },
  };
}

/** Appends one after the other, so arrival order is the order given. */
/** Compares what `readPayload` gave back with what was appended: fields and body bytes. */
export function assertSamePayload(actual: EventPayload, expected: EventPayload): void {
  assert.ok(Buffer.isBuffer(actual.body), 'the body is a Buffer');
  assert.ok(actual.body.equals(expected.body), `the body bytes of ${expected.id} are unchanged`);
  assert.deepEqual(withoutBody(actual), withoutBody(expected));
}

function withoutBody(p: EventPayload): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(p)) {
    if (key !== 'body' && value !== undefined) out[key] = value;
  }
  return out;
}

export async function appendAll(store: Store, payloads: EventPayload[]): Promise<EventSummary[]> {
  const out: EventSummary[] = [];
  for (const p of payloads) out.push(await store.appendEvent(p));
  return out;
}

export function attempt(at: number, outcome: Attempt['outcome'] = 'failed'): Attempt {
  return {
    at,
    agentId: 'ag_1',
    outcome,
    status: outcome === 'failed' ? 500 : outcome === 'delivered' ? 200 : null,
    durationMs: 12,
    error: outcome === 'failed' ? 'app answered 500' : null,
  };
}

/** The outcome of an attempt at `at`: `queued` waits until `retryAt`, others are final. */
export function outcome(
  status: 'delivered' | 'failed' | 'filtered' | 'queued',
  at: number,
  attemptCount: number,
  retryAt = 0,
): EventUpdate {
  const kind: Attempt['outcome'] =
    status === 'delivered' ? 'delivered' : status === 'filtered' ? 'filtered' : 'failed';
  return { status, attemptCount, nextAttemptAt: retryAt, attempt: attempt(at, kind) };
}

/** What an operator's skip writes: the head is moved out of its key's way. */
export function skip(at: number, attemptCount: number): EventUpdate {
  return { status: 'failed', attemptCount, nextAttemptAt: 0, attempt: attempt(at, 'skipped') };
}

/** What an operator's replay writes. */
export function replay(replays: number): EventUpdate {
  return { status: 'queued', attemptCount: 0, nextAttemptAt: 0, replays, deliveredRoutes: [] };
}

export function claimRequest(
  owner: string,
  channelId: string,
  now: number,
  opts: { ordered?: boolean; limit?: number; leaseMs?: number } = {},
): ClaimRequest {
  return {
    owner,
    channelId,
    ordered: opts.ordered ?? false,
    limit: opts.limit ?? 100,
    now,
    leaseMs: opts.leaseMs ?? LEASE_MS,
  };
}

export function ref(claim: Claim): ClaimRef {
  return { id: claim.event.id, epoch: claim.epoch };
}

/** The ids claimed, sorted (the suite checks which events, not the order of the array). */
export function claimedIds(claims: Claim[]): string[] {
  return claims.map((c) => c.event.id).sort();
}

export function ids(events: readonly { id: string }[]): string[] {
  return events.map((e) => e.id);
}

/** The one claim of a result, failing if there is not exactly one. */
export function only(claims: Claim[]): Claim {
  assert.equal(claims.length, 1, `one claim expected, got ${claims.length}`);
  const claim = claims[0];
  assert.ok(claim);
  return claim;
}

export async function mustGet(store: Store, id: string): Promise<EventSummary> {
  const event = await store.getEvent(id);
  assert.ok(event, `${id} should exist`);
  return event;
}

export function counts(partial: Partial<Record<EventStatus, number>>): Record<EventStatus, number> {
  return {
    queued: 0,
    delivering: 0,
    delivered: 0,
    failed: 0,
    rejected: 0,
    filtered: 0,
    ...partial,
  };
}

/** Every event of a list, walking pages of `limit` through `next`. */
export async function listAll(
  store: Store,
  filter: { channelId?: string; status?: EventStatus },
  limit = 1_000,
): Promise<EventSummary[]> {
  const out: EventSummary[] = [];
  let before: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const result = await store.listEvents({ ...filter, limit, ...(before ? { before } : {}) });
    assert.ok(result.events.length <= limit, 'a page holds at most `limit` events');
    out.push(...result.events);
    if (result.next === null) return out;
    before = result.next;
  }
  assert.fail('listEvents never reached the end');
}

export async function rejectsWithCode(
  promise: Promise<unknown>,
  code: ErrorCode,
  status: number,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof PosternError, `a PosternError expected, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    return true;
  });
}

/** Records every change of the feed until `stop`. */
export class FeedLog {
  readonly changes: StoreChange[] = [];
  readonly stop: () => void;

  constructor(store: Store) {
    this.stop = store.subscribe((change) => this.changes.push(change));
  }

  clear(): void {
    this.changes.length = 0;
  }

  hasEvent(id: string, status: EventStatus): boolean {
    return this.changes.some(
      (c) => c.type === 'event' && c.event.id === id && c.event.status === status,
    );
  }

  hasWork(channelId: string): boolean {
    return this.changes.some((c) => c.type === 'work' && c.channelId === channelId);
  }

  hasControl(): boolean {
    return this.changes.some((c) => c.type === 'control');
  }
}

/** Waits until `condition` holds: the feed may report a change after the write resolved. */
export async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export function channel(id: string, overrides: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    id,
    name: `channel ${id}`,
    verify: null,
    response: { mode: 'async', timeoutMs: 10_000 },
    retry: { delaysMs: [5_000, 300_000] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: 1_048_576,
    methods: null,
    paths: null,
    createdAt: START,
    ...overrides,
  };
}

export function agent(id: string, channels: string[] = []): AgentRecord {
  return {
    id,
    name: `agent ${id}`,
    channels,
    publicKey: null,
    createdAt: START,
    pairedAt: null,
    lastSeenAt: null,
    version: null,
  };
}
