/**
 * Shared pieces of the agent-group, ordering, routing and backpressure suites: typed views of
 * the admin API's events, webhooks sent one by one (so that arrival order is known), apps that
 * count their requests in flight, and a seeded pseudo-random failure plan.
 */
import type { ServerResponse } from 'node:http';
import { Agent, request } from 'undici';
import type { Received } from '../helpers/app.ts';
import { eventually, listEvents, type RelayHandle } from '../helpers/processes.ts';
import { idFromBody } from '../fault/helpers.ts';

/** Upper bound for one end-to-end test on a busy machine: a hang fails instead of stalling. */
export const TEST_TIMEOUT_MS = 120_000;
/** Upper bound for starting a suite's relay, apps and agents. */
export const SETUP_TIMEOUT_MS = 60_000;

export interface Attempt {
  at: string;
  agentId: string;
  outcome: string;
  status: number | null;
  error: string | null;
}

export interface EventView {
  id: string;
  channelId: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  orderKey?: string;
  deliveredRoutes?: string[];
  attempts: Attempt[];
}

export function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not set up`);
  return value;
}

export function getEvent(relay: RelayHandle, id: string): Promise<EventView> {
  return relay.api<EventView>('GET', `/api/events/${id}`);
}

/** Every event of a channel (see listEvents). */
export function listChannel(relay: RelayHandle, channelId: string): Promise<EventView[]> {
  return listEvents<EventView>(relay, channelId);
}

/** Waits until every event of `ids` is in a final state accepted by `done`; returns them. */
export async function waitEvents(
  relay: RelayHandle,
  channelId: string,
  ids: Iterable<string>,
  done: (e: EventView) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<Map<string, EventView>> {
  const wanted = new Set(ids);
  let last = '';
  try {
    return await eventually(
      async () => {
        const events = (await listChannel(relay, channelId)).filter((e) => wanted.has(e.id));
        const pending = events.filter((e) => !done(e));
        last = `${events.length} of ${wanted.size} listed, ${pending.length} not yet ${what}`;
        if (events.length !== wanted.size || pending.length > 0) return undefined;
        return new Map(events.map((e) => [e.id, e]));
      },
      timeoutMs,
      `${wanted.size} events to be ${what}`,
    );
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)} (${last})`);
  }
}

export function waitDelivered(
  relay: RelayHandle,
  channelId: string,
  ids: Iterable<string>,
  timeoutMs?: number,
): Promise<Map<string, EventView>> {
  return waitEvents(relay, channelId, ids, (e) => e.status === 'delivered', 'delivered', timeoutMs);
}

export interface Answer {
  status: number;
  id: string | null;
  retryAfter: string | null;
  text: string;
}

/** One webhook to a channel; returns the relay's answer (202 carries the event id). */
export async function post(
  relay: RelayHandle,
  channelId: string,
  body: string | Buffer,
  opts: { dispatcher: Agent; headers?: Record<string, string> },
): Promise<Answer> {
  const res = await request(`${relay.url}/h/${channelId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...opts.headers },
    body,
    dispatcher: opts.dispatcher,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const text = await res.body.text();
  const ra = res.headers['retry-after'];
  return {
    status: res.statusCode,
    id: res.statusCode === 202 ? idFromBody(text) : null,
    retryAfter: ra === undefined ? null : String(ra),
    text,
  };
}

/** One webhook that must be accepted; returns its event id. */
export async function postAccepted(
  relay: RelayHandle,
  channelId: string,
  body: string | Buffer,
  opts: { dispatcher: Agent; headers?: Record<string, string> },
): Promise<string> {
  const answer = await post(relay, channelId, body, opts);
  if (answer.status !== 202 || answer.id === null) {
    throw new Error(`ingress answered ${answer.status} ${answer.text}`);
  }
  return answer.id;
}

export function eventIdOf(req: Received): string {
  const id = req.headers['x-postern-event-id'];
  return typeof id === 'string' ? id : '';
}

/** The JSON body of a request the app received, as an object (empty when not one). */
export function bodyOf(req: Received): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(req.body.toString('utf8'));
  } catch {
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  return { ...parsed };
}

/** How many requests each event id got, among `received`. */
export function countById(received: readonly Received[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const req of received) {
    const id = eventIdOf(req);
    out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** 32-bit FNV-1a of a string, to seed per-request decisions that do not depend on timing. */
export function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Deterministic PRNG (mulberry32): the same seed gives the same sequence. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Whether the app fails attempt `attempt` (1-based) of the event labelled `label`: a seeded
 * coin with probability `rate`, the same whatever the timing; never more than `maxFailures`
 * attempts in a row, so that a channel with more retries than that never gives up.
 */
export function plannedFailure(
  seed: number,
  label: string,
  attempt: number,
  rate: number,
  maxFailures: number,
): boolean {
  if (attempt > maxFailures) return false;
  return prng(hash(`${seed}/${label}/${attempt}`))() < rate;
}

/** Counts requests in flight at an app, overall and per key. */
export class InFlight {
  now = 0;
  max = 0;
  readonly #perKey = new Map<string, number>();
  /** Highest count of one key in flight at once, by key. */
  readonly maxPerKey = new Map<string, number>();

  enter(key = ''): void {
    this.now++;
    this.max = Math.max(this.max, this.now);
    const n = (this.#perKey.get(key) ?? 0) + 1;
    this.#perKey.set(key, n);
    this.maxPerKey.set(key, Math.max(this.maxPerKey.get(key) ?? 0, n));
  }

  leave(key = ''): void {
    this.now--;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 1) - 1);
  }
}

/** Answers `status` after `holdMs`, leaving the in-flight count just before the answer. */
export function answerLater(
  res: ServerResponse,
  status: number,
  holdMs: number,
  onLeave: () => void,
): void {
  setTimeout(() => {
    onLeave();
    res.statusCode = status;
    res.end(status < 300 ? 'ok' : 'fail');
  }, holdMs);
}
