/** Channel options: validation of admin input, defaults, and the public (secret-free) view. */
import { PosternError } from '../shared/errors.ts';
import {
  isObject,
  readBoolean,
  readEnum,
  readInt,
  readString,
  type Fail,
  type Obj,
} from '../shared/fields.ts';
import { MAX_BODY_BYTES } from '../shared/protocol.ts';
import { DEFAULT_RETRY_DELAYS_MS } from './dispatch/retry.ts';
import { parseMethods, parsePaths } from './http/channel-rules.ts';
import type { ChannelRecord } from './store/types.ts';
import { describeVerifyConfig, parseVerifyConfig } from './verify/index.ts';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_DELAY_MS = 7 * 24 * 3_600_000;
export const DEFAULT_SYNC_TIMEOUT_MS = 10_000;

const fail: Fail = (field, expected) => {
  throw new PosternError('ERR_BAD_REQUEST', `${field}: expected ${expected}`, { status: 400 });
};

function parseName(raw: Obj): string {
  const name = readString(raw, 'name', fail, { min: 1, max: 64 });
  if (!NAME.test(name))
    fail('name', 'letters, digits, ".", "_" or "-", starting with a letter or digit');
  return name;
}

function parseResponse(value: unknown): ChannelRecord['response'] {
  if (!isObject(value)) return fail('response', 'an object {mode, timeoutMs}');
  const mode = readEnum(value, 'mode', ['async', 'sync'], (f, e) => fail(`response.${f}`, e));
  const timeoutMs =
    value['timeoutMs'] === undefined
      ? DEFAULT_SYNC_TIMEOUT_MS
      : readInt(value, 'timeoutMs', (f, e) => fail(`response.${f}`, e), 100, 60_000);
  return { mode, timeoutMs };
}

function parseRetry(value: unknown): ChannelRecord['retry'] {
  if (!isObject(value) || !Array.isArray(value['delaysMs']) || value['delaysMs'].length > 50) {
    return fail('retry', 'an object {delaysMs: [up to 50 delays in ms]}');
  }
  const delaysMs = value['delaysMs'].map((d: unknown, i: number) => {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0 || d > MAX_DELAY_MS) {
      return fail(`retry.delaysMs[${i}]`, `an integer from 0 to ${MAX_DELAY_MS}`);
    }
    return d;
  });
  return { delaysMs };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const JSON_PATH = /^[^.\s]{1,64}(\.[^.\s]{1,64}){0,15}$/;

function parseOrderingKey(value: unknown): ChannelRecord['orderingKey'] {
  if (value === null) return null;
  const expected = 'null, {"header": "<header name>"} or {"jsonField": "<dotted.path>"}';
  if (!isObject(value) || Object.keys(value).length !== 1) return fail('orderingKey', expected);
  if (typeof value['header'] === 'string' && HEADER_NAME.test(value['header'])) {
    return { header: value['header'].toLowerCase() };
  }
  if (typeof value['jsonField'] === 'string' && JSON_PATH.test(value['jsonField'])) {
    return { jsonField: value['jsonField'] };
  }
  return fail('orderingKey', expected);
}

function parseRateLimit(value: unknown): ChannelRecord['rateLimit'] {
  if (value === null) return null;
  if (!isObject(value)) return fail('rateLimit', 'null or {perSecond, burst}');
  const f: Fail = (field, expected) => fail(`rateLimit.${field}`, expected);
  for (const key of Object.keys(value)) {
    if (key !== 'perSecond' && key !== 'burst') f(key, 'no such field (perSecond, burst)');
  }
  const perSecond = readInt(value, 'perSecond', f, 1, 1_000_000);
  const burst = value['burst'] === undefined ? perSecond : readInt(value, 'burst', f, 1, 1_000_000);
  return { perSecond, burst };
}

/** A new channel from `POST /api/channels`. */
export function parseNewChannel(raw: Obj, id: string, now: number): ChannelRecord {
  const channel: ChannelRecord = {
    id,
    name: parseName(raw),
    verify: null,
    response: { mode: 'async', timeoutMs: DEFAULT_SYNC_TIMEOUT_MS },
    retry: { delaysMs: [...DEFAULT_RETRY_DELAYS_MS] },
    ordered: false,
    orderingKey: null,
    rateLimit: null,
    maxBodyBytes: MAX_BODY_BYTES,
    methods: null,
    paths: null,
    createdAt: now,
  };
  applyChannelPatch(channel, raw);
  return channel;
}

const PATCHABLE = new Set([
  'name',
  'verify',
  'response',
  'retry',
  'ordered',
  'orderingKey',
  'rateLimit',
  'maxBodyBytes',
  'methods',
  'paths',
]);

/** Applies the fields present in `raw` (create or `PATCH`); unknown fields are refused. */
export function applyChannelPatch(channel: ChannelRecord, raw: Obj): void {
  for (const key of Object.keys(raw)) {
    if (!PATCHABLE.has(key)) fail(key, `one of the channel fields ${[...PATCHABLE].join(', ')}`);
  }
  if (raw['name'] !== undefined) channel.name = parseName(raw);
  if (raw['verify'] !== undefined) channel.verify = parseVerifyConfig(raw['verify'], fail);
  if (raw['response'] !== undefined) channel.response = parseResponse(raw['response']);
  if (raw['retry'] !== undefined) channel.retry = parseRetry(raw['retry']);
  if (raw['ordered'] !== undefined) channel.ordered = readBoolean(raw, 'ordered', fail);
  if (raw['orderingKey'] !== undefined) channel.orderingKey = parseOrderingKey(raw['orderingKey']);
  if (channel.orderingKey !== null && !channel.ordered) {
    fail('orderingKey', 'to be set only on an ordered channel ("ordered": true)');
  }
  if (raw['rateLimit'] !== undefined) channel.rateLimit = parseRateLimit(raw['rateLimit']);
  if (raw['maxBodyBytes'] !== undefined) {
    channel.maxBodyBytes = readInt(raw, 'maxBodyBytes', fail, 1, MAX_BODY_BYTES);
  }
  if (raw['methods'] !== undefined) channel.methods = parseMethods(raw['methods'], fail);
  if (raw['paths'] !== undefined) channel.paths = parsePaths(raw['paths'], fail);
}

/** What API answers show of a channel: never a secret. */
export function channelView(channel: ChannelRecord, publicUrl: string): Record<string, unknown> {
  return {
    id: channel.id,
    name: channel.name,
    ingressUrl: `${publicUrl}/h/${channel.id}`,
    verify: describeVerifyConfig(channel.verify),
    response: channel.response,
    retry: channel.retry,
    ordered: channel.ordered,
    orderingKey: channel.orderingKey,
    rateLimit: channel.rateLimit,
    maxBodyBytes: channel.maxBodyBytes,
    methods: channel.methods,
    paths: channel.paths,
    createdAt: new Date(channel.createdAt).toISOString(),
  };
}
