/**
 * The journal's record payloads: an event as ingress captured it, and each later change to its
 * delivery state. Layout of a payload: `[u8 kind]` then
 * - kind 1 (event): `[u32 n][n bytes JSON metadata][body bytes]`;
 * - kind 2 (update): JSON `{id, ...EventUpdate}`.
 */
import { PosternError } from '../../shared/errors.ts';
import {
  isObject,
  readBoolean,
  readEnum,
  readHeaderPairs,
  readInt,
  readString,
  type Fail,
  type Obj,
} from '../../shared/fields.ts';
import type { Attempt, AttemptResponse, EventPayload, EventStatus, EventUpdate } from './types.ts';

const KIND_EVENT = 1;
const KIND_UPDATE = 2;

export const STATUSES: readonly EventStatus[] = [
  'queued',
  'delivering',
  'delivered',
  'failed',
  'rejected',
  'filtered',
];

export type JournalRecord =
  { kind: 'event'; payload: EventPayload } | { kind: 'update'; id: string; update: EventUpdate };

export function encodeEventRecord(p: EventPayload): Buffer {
  const meta = Buffer.from(
    JSON.stringify({
      id: p.id,
      channelId: p.channelId,
      receivedAt: p.receivedAt,
      method: p.method,
      path: p.path,
      query: p.query,
      headers: p.headers,
      originalUrl: p.originalUrl,
      remoteAddress: p.remoteAddress,
      ...(p.rejected ? { rejected: p.rejected } : {}),
      ...(p.orderKey !== undefined ? { orderKey: p.orderKey } : {}),
      ...(p.dedupKey !== undefined ? { dedupKey: p.dedupKey } : {}),
      ...(p.respondBy !== undefined ? { respondBy: p.respondBy } : {}),
    }),
  );
  const out = Buffer.allocUnsafe(5 + meta.length + p.body.length);
  out[0] = KIND_EVENT;
  out.writeUInt32BE(meta.length, 1);
  meta.copy(out, 5);
  p.body.copy(out, 5 + meta.length);
  return out;
}

export function encodeUpdateRecord(id: string, update: EventUpdate): Buffer {
  const json = Buffer.from(JSON.stringify({ id, ...update }));
  const out = Buffer.allocUnsafe(1 + json.length);
  out[0] = KIND_UPDATE;
  json.copy(out, 1);
  return out;
}

const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_STORE_CORRUPT', `journal record: ${field} is not ${expected}`);
};

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Bounds looser than the protocol's, so that a record stays readable if those change. */
function readResponse(value: unknown, onBad: Fail): AttemptResponse {
  if (!isObject(value)) return onBad('attempt.response', 'an object');
  const body = readString(value, 'body', onBad, { max: 1 << 16 });
  if (!BASE64.test(body)) onBad('attempt.response.body', 'base64');
  return {
    headers: readHeaderPairs(value, 'headers', onBad, 10_000),
    body,
    bodyBytes: readInt(value, 'bodyBytes', onBad, 0, Number.MAX_SAFE_INTEGER),
    truncated: readBoolean(value, 'truncated', onBad),
  };
}

/** An attempt as stored; `onBad` says where a bad field came from (default: a journal record). */
export function readAttempt(value: unknown, onBad: Fail = fail): Attempt {
  if (!isObject(value)) return onBad('attempt', 'an object');
  const status = value['status'];
  const error = value['error'];
  const attempt: Attempt = {
    at: readInt(value, 'at', onBad, 0, Number.MAX_SAFE_INTEGER),
    agentId: readString(value, 'agentId', onBad),
    outcome: readEnum(
      value,
      'outcome',
      ['delivered', 'failed', 'no_route', 'filtered', 'skipped'],
      onBad,
    ),
    status: typeof status === 'number' ? status : null,
    durationMs: readInt(value, 'durationMs', onBad, 0, Number.MAX_SAFE_INTEGER),
    error: typeof error === 'string' ? error : null,
  };
  // Both absent from attempts recorded before they existed.
  if (value['response'] !== undefined) attempt.response = readResponse(value['response'], onBad);
  if (value['replay'] !== undefined) {
    attempt.replay = readInt(value, 'replay', onBad, 0, Number.MAX_SAFE_INTEGER);
  }
  return attempt;
}

function readJson(buf: Buffer, start: number, end: number): Obj {
  let value: unknown;
  try {
    value = JSON.parse(buf.toString('utf8', start, end));
  } catch {
    return fail('JSON', 'valid');
  }
  if (!isObject(value)) return fail('JSON', 'an object');
  return value;
}

/** Decodes a record payload; `body` shares memory with `buf`. */
export function decodeRecord(buf: Buffer): JournalRecord {
  if (buf[0] === KIND_EVENT) {
    if (buf.length < 5) return fail('event record', 'long enough');
    const metaEnd = 5 + buf.readUInt32BE(1);
    if (metaEnd > buf.length) return fail('event metadata length', 'within the record');
    const m = readJson(buf, 5, metaEnd);
    const rejected = m['rejected'];
    const payload: EventPayload = {
      id: readString(m, 'id', fail),
      channelId: readString(m, 'channelId', fail),
      receivedAt: readInt(m, 'receivedAt', fail, 0, Number.MAX_SAFE_INTEGER),
      method: readString(m, 'method', fail),
      path: readString(m, 'path', fail, { max: 1 << 20 }),
      query: readString(m, 'query', fail, { max: 1 << 20 }),
      headers: readHeaderPairs(m, 'headers', fail, 100_000),
      originalUrl: readString(m, 'originalUrl', fail, { max: 1 << 20 }),
      remoteAddress: readString(m, 'remoteAddress', fail),
      body: buf.subarray(metaEnd),
    };
    if (m['orderKey'] !== undefined) payload.orderKey = readString(m, 'orderKey', fail);
    // Absent from records written before replay protection: such events simply have no key.
    if (m['dedupKey'] !== undefined) {
      payload.dedupKey = readString(m, 'dedupKey', fail, { min: 1, max: 128 });
    }
    if (m['respondBy'] !== undefined) {
      payload.respondBy = readInt(m, 'respondBy', fail, 0, Number.MAX_SAFE_INTEGER);
    }
    if (rejected !== undefined) {
      if (!isObject(rejected)) return fail('rejected', 'an object');
      payload.rejected = {
        reason: readString(rejected, 'reason', fail),
        size: readInt(rejected, 'size', fail, 0, Number.MAX_SAFE_INTEGER),
      };
    }
    return { kind: 'event', payload };
  }
  if (buf[0] === KIND_UPDATE) {
    const u = readJson(buf, 1, buf.length);
    const update: EventUpdate = {
      status: readEnum(u, 'status', STATUSES, fail),
      attemptCount: readInt(u, 'attemptCount', fail, 0, Number.MAX_SAFE_INTEGER),
      nextAttemptAt: readInt(u, 'nextAttemptAt', fail, 0, Number.MAX_SAFE_INTEGER),
    };
    if (u['attempt'] !== undefined) update.attempt = readAttempt(u['attempt']);
    if (u['deliveredRoutes'] !== undefined) {
      const routes = u['deliveredRoutes'];
      if (!Array.isArray(routes) || !routes.every((r) => typeof r === 'string')) {
        return fail('deliveredRoutes', 'a list of route names');
      }
      update.deliveredRoutes = routes as string[];
    }
    if (u['attempts'] !== undefined) {
      if (!Array.isArray(u['attempts'])) return fail('attempts', 'a list');
      update.attempts = u['attempts'].map((a: unknown) => readAttempt(a));
    }
    if (u['replays'] !== undefined) {
      update.replays = readInt(u, 'replays', fail, 0, Number.MAX_SAFE_INTEGER);
    }
    return { kind: 'update', id: readString(u, 'id', fail), update };
  }
  return fail('record kind', 'known');
}
