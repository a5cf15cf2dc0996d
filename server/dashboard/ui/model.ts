/** What the dashboard reads from the admin API, decoded from JSON at the boundary. */
import {
  DecodeError,
  bool,
  list,
  num,
  obj,
  optNum,
  optStr,
  str,
  strings,
  type Obj,
} from './decode.ts';

/** Event statuses, in the order the filter offers them. */
export const STATUSES = [
  'queued',
  'delivering',
  'delivered',
  'failed',
  'filtered',
  'rejected',
] as const;

/** Statuses the relay refuses to replay (no body kept, or a delivery under way). */
const NOT_REPLAYABLE: ReadonlySet<string> = new Set(['rejected', 'delivering']);

export function canReplay(status: string): boolean {
  return !NOT_REPLAYABLE.has(status);
}

/** A channel's `verify` as the API shows it: every field but the secrets. */
export interface VerifyView {
  provider: string;
  /** A previous secret is accepted too (a rotation is under way). */
  rotating: boolean;
  /** `hmac` only. */
  header: string | null;
  algorithm: string | null;
  encoding: string | null;
  prefix: string | null;
}

/** The fields of `POST /api/channels` and `PATCH /api/channels/:id` (see the README). */
export type ChannelFields = Record<string, unknown>;

export type OrderingKey = { header: string } | { jsonField: string } | null;

export interface Channel {
  id: string;
  name: string;
  ingressUrl: string;
  /** Verification provider, or null when the channel checks no signature. */
  provider: string | null;
  verify: VerifyView | null;
  mode: string;
  timeoutMs: number | null;
  /** Waits before the 2nd, 3rd, … attempt; null when the answer did not say. */
  retryDelaysMs: number[] | null;
  ordered: boolean;
  orderingKey: OrderingKey;
  rateLimit: { perSecond: number; burst: number } | null;
  maxBodyBytes: number | null;
  methods: string[] | null;
  paths: string[] | null;
  createdAt: string | null;
}

export interface Agent {
  id: string;
  name: string;
  channels: string[];
  paired: boolean;
  connected: boolean;
  inFlight: number;
  createdAt: string | null;
  lastSeenAt: string | null;
  version: string | null;
}

export interface NewAgent {
  agent: Agent;
  pairingCode: string;
  expiresAt: string | null;
  /** The relay's public URL, for the agent's `pair --relay`. */
  relayUrl: string | null;
}

/** The app's answer to one attempt, bounded by the agent (see the README). */
export interface AttemptResponse {
  headers: [string, string][];
  /** base64 of the first bytes of the body. */
  body: string;
  /** Bytes of the body the agent read. */
  bodyBytes: number;
  /** The body (or the headers) went past the bound: only the start is kept. */
  truncated: boolean;
}

export interface Attempt {
  at: string | null;
  agentId: string;
  outcome: string;
  status: number | null;
  durationMs: number | null;
  error: string | null;
  response: AttemptResponse | null;
  /** The event's replay count when the attempt was made; 0 for the original delivery. */
  replay: number;
}

/** Why an unfinished event waits (the relay sets it on queued and delivering events). */
export interface Waiting {
  reason: string;
  message: string;
  retryAt: number | null;
  lastError: string | null;
  agentId: string | null;
  agentName: string | null;
  blockedBy: string | null;
}

export interface EventView {
  id: string;
  channelId: string;
  status: string;
  receivedAt: string | null;
  method: string;
  path: string;
  query: string;
  size: number;
  attemptCount: number;
  nextAttemptAt: string | null;
  reason: string | null;
  waiting: Waiting | null;
  attempts: Attempt[];
}

export interface EventDetail extends EventView {
  originalUrl: string;
  remoteAddress: string;
  headers: [string, string][];
  /** base64 */
  body: string;
}

export interface EventPage {
  events: EventView[];
  next: string | null;
  /** With a search only: how many events the relay examined for this page. */
  examined: number | null;
}

function present(o: Obj, key: string): boolean {
  return o[key] !== null && o[key] !== undefined;
}

function pairs(o: Obj, key: string): [string, string][] {
  return list(o, key, (pair, i): [string, string] => {
    const name: unknown = Array.isArray(pair) ? pair[0] : undefined;
    const v: unknown = Array.isArray(pair) ? pair[1] : undefined;
    if (typeof name !== 'string' || typeof v !== 'string') {
      throw new DecodeError(`${key}[${i}]: expected a [name, value] pair of strings`);
    }
    return [name, v];
  });
}

function decodeVerify(value: unknown): VerifyView {
  const v = obj(value, 'verify');
  return {
    provider: str(v, 'provider'),
    rotating: v['rotating'] === undefined ? false : bool(v, 'rotating'),
    header: optStr(v, 'header'),
    algorithm: optStr(v, 'algorithm'),
    encoding: optStr(v, 'encoding'),
    prefix: optStr(v, 'prefix'),
  };
}

function decodeOrderingKey(o: Obj): OrderingKey {
  if (!present(o, 'orderingKey')) return null;
  const k = obj(o['orderingKey'], 'orderingKey');
  if (typeof k['header'] === 'string') return { header: k['header'] };
  return { jsonField: str(k, 'jsonField') };
}

export function decodeChannel(value: unknown): Channel {
  const o = obj(value, 'channel');
  const verify = present(o, 'verify') ? decodeVerify(o['verify']) : null;
  const response = present(o, 'response') ? obj(o['response'], 'response') : null;
  const retry = present(o, 'retry') ? obj(o['retry'], 'retry') : null;
  const rate = present(o, 'rateLimit') ? obj(o['rateLimit'], 'rateLimit') : null;
  return {
    id: str(o, 'id'),
    name: str(o, 'name'),
    ingressUrl: str(o, 'ingressUrl'),
    provider: verify ? verify.provider : null,
    verify,
    mode: response ? str(response, 'mode') : 'async',
    timeoutMs: response ? optNum(response, 'timeoutMs') : null,
    retryDelaysMs: retry
      ? list(retry, 'delaysMs', (d, i) => {
          if (typeof d !== 'number') throw new DecodeError(`delaysMs[${i}]: expected a number`);
          return d;
        })
      : null,
    ordered: o['ordered'] === undefined ? false : bool(o, 'ordered'),
    orderingKey: decodeOrderingKey(o),
    rateLimit: rate ? { perSecond: num(rate, 'perSecond'), burst: num(rate, 'burst') } : null,
    maxBodyBytes: optNum(o, 'maxBodyBytes'),
    methods: present(o, 'methods') ? strings(o, 'methods') : null,
    paths: present(o, 'paths') ? strings(o, 'paths') : null,
    createdAt: optStr(o, 'createdAt'),
  };
}

export function decodeAgent(value: unknown): Agent {
  const o = obj(value, 'agent');
  return {
    id: str(o, 'id'),
    name: str(o, 'name'),
    channels: strings(o, 'channels'),
    paired: bool(o, 'paired'),
    connected: bool(o, 'connected'),
    inFlight: optNum(o, 'inFlight') ?? 0,
    createdAt: optStr(o, 'createdAt'),
    lastSeenAt: optStr(o, 'lastSeenAt'),
    version: optStr(o, 'version'),
  };
}

export function decodeNewAgent(value: unknown): NewAgent {
  const o = obj(value, 'agent');
  return {
    agent: decodeAgent(o),
    pairingCode: str(o, 'pairingCode'),
    expiresAt: optStr(o, 'expiresAt'),
    relayUrl: optStr(o, 'relayUrl'),
  };
}

function decodeResponse(value: unknown): AttemptResponse {
  const o = obj(value, 'response');
  return {
    headers: pairs(o, 'headers'),
    body: str(o, 'body'),
    bodyBytes: num(o, 'bodyBytes'),
    truncated: bool(o, 'truncated'),
  };
}

function decodeAttempt(value: unknown): Attempt {
  const o = obj(value, 'attempt');
  return {
    at: optStr(o, 'at'),
    agentId: str(o, 'agentId'),
    outcome: str(o, 'outcome'),
    status: optNum(o, 'status'),
    durationMs: optNum(o, 'durationMs'),
    error: optStr(o, 'error'),
    response: present(o, 'response') ? decodeResponse(o['response']) : null,
    replay: optNum(o, 'replay') ?? 0,
  };
}

function decodeWaiting(value: unknown): Waiting {
  const o = obj(value, 'waiting');
  return {
    reason: str(o, 'reason'),
    message: str(o, 'message'),
    retryAt: optNum(o, 'retryAt'),
    lastError: optStr(o, 'lastError'),
    agentId: optStr(o, 'agentId'),
    agentName: optStr(o, 'agentName'),
    blockedBy: optStr(o, 'blockedBy'),
  };
}

function eventFields(o: Obj): EventView {
  return {
    id: str(o, 'id'),
    channelId: str(o, 'channelId'),
    status: str(o, 'status'),
    receivedAt: optStr(o, 'receivedAt'),
    method: str(o, 'method'),
    path: str(o, 'path'),
    query: str(o, 'query'),
    size: num(o, 'size'),
    attemptCount: num(o, 'attemptCount'),
    nextAttemptAt: optStr(o, 'nextAttemptAt'),
    reason: optStr(o, 'reason'),
    waiting: present(o, 'waiting') ? decodeWaiting(o['waiting']) : null,
    attempts: o['attempts'] === undefined ? [] : list(o, 'attempts', decodeAttempt),
  };
}

export function decodeEvent(value: unknown): EventView {
  return eventFields(obj(value, 'event'));
}

export function decodeEventDetail(value: unknown): EventDetail {
  const o = obj(value, 'event');
  return {
    ...eventFields(o),
    originalUrl: optStr(o, 'originalUrl') ?? '',
    remoteAddress: optStr(o, 'remoteAddress') ?? '',
    headers: pairs(o, 'headers'),
    body: str(o, 'body'),
  };
}

export function decodeEventPage(value: unknown): EventPage {
  const o = obj(value, 'events page');
  return {
    events: list(o, 'events', decodeEvent),
    next: optStr(o, 'next'),
    examined: optNum(o, 'examined'),
  };
}
