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
export const STATUSES = ['queued', 'delivering', 'delivered', 'failed', 'rejected'] as const;

export interface Channel {
  id: string;
  name: string;
  ingressUrl: string;
  /** Verification provider, or null when the channel checks no signature. */
  provider: string | null;
  mode: string;
  timeoutMs: number | null;
  ordered: boolean;
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
}

export interface Attempt {
  at: string | null;
  agentId: string;
  outcome: string;
  status: number | null;
  durationMs: number | null;
  error: string | null;
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
}

export function decodeChannel(value: unknown): Channel {
  const o = obj(value, 'channel');
  const verify =
    o['verify'] === null || o['verify'] === undefined ? null : obj(o['verify'], 'verify');
  const response = o['response'] === undefined ? null : obj(o['response'], 'response');
  return {
    id: str(o, 'id'),
    name: str(o, 'name'),
    ingressUrl: str(o, 'ingressUrl'),
    provider: verify ? str(verify, 'provider') : null,
    mode: response ? str(response, 'mode') : 'async',
    timeoutMs: response ? optNum(response, 'timeoutMs') : null,
    ordered: o['ordered'] === undefined ? false : bool(o, 'ordered'),
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
    headers: list(o, 'headers', (pair, i): [string, string] => {
      const name: unknown = Array.isArray(pair) ? pair[0] : undefined;
      const v: unknown = Array.isArray(pair) ? pair[1] : undefined;
      if (typeof name !== 'string' || typeof v !== 'string') {
        throw new DecodeError(`headers[${i}]: expected a [name, value] pair of strings`);
      }
      return [name, v];
    }),
    body: str(o, 'body'),
  };
}

export function decodeEventPage(value: unknown): EventPage {
  const o = obj(value, 'events page');
  return { events: list(o, 'events', decodeEvent), next: optStr(o, 'next') };
}
