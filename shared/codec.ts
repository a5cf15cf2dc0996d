/**
 * Encoding and validating decoding of tunnel frames (see `protocol.ts` for the layout).
 * Every inbound frame goes through `decodeAgentFrame` or `decodeRelayFrame`; nothing casts.
 */
import { DeliverRefusedError, ProtocolError } from './errors.ts';
import { headerPairBytes } from './http.ts';
import {
  isObject,
  readEnum,
  readBoolean,
  readHeaderPairs,
  readInt,
  readOptionalInt,
  readOptionalString,
  readString,
  type Fail,
  type Obj,
} from './fields.ts';
import {
  MAX_AGENT_FRAME_BYTES,
  MAX_ANSWER_BODY_BYTES,
  MAX_ANSWER_HEADER_BYTES,
  MAX_ERROR_CHARS,
  MAX_FRAME_HEADER_BYTES,
  MAX_HEADER_PAIRS,
  MAX_METHOD_CHARS,
  MAX_ORIGINAL_URL_CHARS,
  MAX_PATH_CHARS,
  MAX_QUERY_CHARS,
  MAX_RELAY_FRAME_BYTES,
  MAX_REMOTE_ADDRESS_CHARS,
  MAX_RESPONSE_BODY_BYTES,
  MAX_BODY_BYTES,
  MAX_WINDOW,
  MAX_ROUTES,
  type AgentFrame,
  type AnswerSummary,
  type ChannelRef,
  type RelayFrame,
} from './protocol.ts';

const ID_MAX = 64;
const ROUTE_NAME_MAX = 128;
const TS_MAX = Number.MAX_SAFE_INTEGER;

/** Encodes a frame: its fields as JSON, then its body bytes, if any. */
export function encodeFrame(frame: AgentFrame | RelayFrame): Buffer {
  const { body, ...fields } = frame as { body?: Uint8Array };
  const json = Buffer.from(JSON.stringify(fields), 'utf8');
  const out = Buffer.allocUnsafe(4 + json.length + (body?.length ?? 0));
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  if (body) out.set(body, 4 + json.length);
  return out;
}

/** Splits a raw frame into its JSON fields and its body, checking sizes. */
function split(data: Buffer, maxBytes: number): { fields: Obj; body: Buffer } {
  if (data.length > maxBytes) {
    throw new ProtocolError(
      'ERR_PROTOCOL_FRAME_TOO_LARGE',
      `frame of ${data.length} bytes exceeds ${maxBytes}`,
    );
  }
  if (data.length < 4)
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED', 'frame shorter than 4 bytes');
  const jsonLength = data.readUInt32BE(0);
  if (jsonLength > MAX_FRAME_HEADER_BYTES || 4 + jsonLength > data.length) {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED', `bad frame header length ${jsonLength}`);
  }
  let fields: unknown;
  try {
    fields = JSON.parse(data.toString('utf8', 4, 4 + jsonLength));
  } catch {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED', 'frame fields are not valid JSON');
  }
  if (!isObject(fields)) {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED', 'frame fields are not a JSON object');
  }
  return { fields, body: data.subarray(4 + jsonLength) };
}

function failer(type: string): Fail {
  return (field, expected) => {
    throw new ProtocolError('ERR_PROTOCOL_BAD_FIELD', `${type}.${field}: expected ${expected}`);
  };
}

function noBody(type: string, body: Buffer): void {
  if (body.length > 0) {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED', `${type} frame carries no body`);
  }
}

function unknownType(type: unknown): never {
  throw new ProtocolError(
    'ERR_PROTOCOL_UNKNOWN_TYPE',
    `unknown frame type ${JSON.stringify(type)?.slice(0, 64)}`,
  );
}

function readNames(obj: Obj, key: string, fail: Fail): string[] {
  const value = obj[key];
  if (
    !Array.isArray(value) ||
    value.length > MAX_ROUTES ||
    !value.every((v) => typeof v === 'string' && v.length > 0 && v.length <= ROUTE_NAME_MAX)
  ) {
    return fail(key, `a list of at most ${MAX_ROUTES} route names`);
  }
  return value as string[];
}

function readChannels(obj: Obj, fail: Fail): ChannelRef[] {
  const value = obj['channels'];
  if (!Array.isArray(value) || value.length > 10_000) fail('channels', 'a list of channels');
  return value.map((item: unknown) => {
    if (!isObject(item)) fail('channels', 'a list of {id, name}');
    return {
      id: readString(item, 'id', fail, { min: 1, max: ID_MAX }),
      name: readString(item, 'name', fail, { min: 1, max: 200 }),
    };
  });
}

function readAnswer(value: unknown, fail: Fail): AnswerSummary {
  const f: Fail = (field, expected) => fail(`response.${field}`, expected);
  if (!isObject(value)) return fail('response', 'an object {headers, bodyBytes, truncated}');
  const headers = readHeaderPairs(value, 'headers', f, MAX_HEADER_PAIRS);
  let bytes = 0;
  for (const pair of headers) bytes += headerPairBytes(pair);
  if (bytes > MAX_ANSWER_HEADER_BYTES) f('headers', `at most ${MAX_ANSWER_HEADER_BYTES} bytes`);
  return {
    headers,
    bodyBytes: readInt(value, 'bodyBytes', f, 0, TS_MAX),
    truncated: readBoolean(value, 'truncated', f),
  };
}

/**
 * The first bytes of the app's body that an ack's `response` keeps: the start of the whole body
 * when the ack carries it (`responseHeaders`), else the ack's body itself.
 */
export function answerStart(ack: Extract<AgentFrame, { type: 'ack' }>): Uint8Array {
  const body = ack.body ?? new Uint8Array(0);
  return ack.responseHeaders ? body.subarray(0, MAX_ANSWER_BODY_BYTES) : body;
}

/**
 * An ack as a relay that does not take answers must get it (see `welcome.answers`): without
 * `response`, and without a body unless it carries the sync response.
 */
export function withoutAnswer(frame: AgentFrame): AgentFrame {
  if (frame.type !== 'ack' || frame.response === undefined) return frame;
  const { response: _response, body, ...rest } = frame;
  return frame.responseHeaders ? { ...rest, body: body ?? new Uint8Array(0) } : rest;
}

/** Validates a frame sent by an agent. Throws `ProtocolError` on anything else. */
export function decodeAgentFrame(data: Buffer): AgentFrame {
  const { fields, body } = split(data, MAX_AGENT_FRAME_BYTES);
  const type = fields['type'];
  const fail = failer(String(type));
  switch (type) {
    case 'hello':
      noBody(type, body);
      return {
        type,
        protocol: readInt(fields, 'protocol', fail, 0, 65_535),
        agentVersion: readString(fields, 'agentVersion', fail, { max: 64 }),
      };
    case 'ack': {
      if (body.length > MAX_RESPONSE_BODY_BYTES)
        fail('body', `at most ${MAX_RESPONSE_BODY_BYTES} bytes`);
      const frame: AgentFrame = {
        type,
        eventId: readString(fields, 'eventId', fail, { min: 1, max: ID_MAX }),
        outcome: readEnum(fields, 'outcome', ['delivered', 'failed', 'no_route', 'filtered'], fail),
        durationMs: readInt(fields, 'durationMs', fail, 0, TS_MAX),
      };
      const status = readOptionalInt(fields, 'status', fail, 100, 999);
      if (status !== undefined) frame.status = status;
      const error = readOptionalString(fields, 'error', fail, { max: MAX_ERROR_CHARS });
      if (error !== undefined) frame.error = error;
      const retryAfterMs = readOptionalInt(fields, 'retryAfterMs', fail, 0, TS_MAX);
      if (retryAfterMs !== undefined) frame.retryAfterMs = retryAfterMs;
      if (fields['routes'] !== undefined) frame.routes = readNames(fields, 'routes', fail);
      const response =
        fields['response'] === undefined ? undefined : readAnswer(fields['response'], fail);
      if (fields['responseHeaders'] !== undefined) {
        frame.responseHeaders = readHeaderPairs(fields, 'responseHeaders', fail, MAX_HEADER_PAIRS);
        frame.body = body;
        if (response && response.bodyBytes !== body.length) {
          fail('response.bodyBytes', `the length of the body sent (${body.length})`);
        }
      } else if (response) {
        const kept = Math.min(response.bodyBytes, MAX_ANSWER_BODY_BYTES);
        if (body.length !== kept) fail('body', `the first ${kept} bytes of the app's body`);
        frame.body = body;
      } else {
        noBody(type, body);
      }
      if (response) {
        if (response.bodyBytes > MAX_ANSWER_BODY_BYTES && !response.truncated) {
          fail('response.truncated', `true when bodyBytes exceeds ${MAX_ANSWER_BODY_BYTES}`);
        }
        frame.response = response;
      }
      return frame;
    }
    case 'ping':
    case 'pong':
      noBody(type, body);
      return { type, ts: readInt(fields, 'ts', fail, 0, TS_MAX) };
    default:
      return unknownType(type);
  }
}

/**
 * A `deliver` without a readable `eventId` is a broken peer (ProtocolError); with one, any other
 * field out of bounds refuses this event only (DeliverRefusedError), so it can be answered.
 */
function decodeDeliver(fields: Obj, body: Buffer): Extract<RelayFrame, { type: 'deliver' }> {
  const eventId = readString(fields, 'eventId', failer('deliver'), { min: 1, max: ID_MAX });
  const fail: Fail = (field, expected) => {
    throw new DeliverRefusedError(eventId, `${field}: expected ${expected}`, body.length);
  };
  if (body.length > MAX_BODY_BYTES) fail('body', `at most ${MAX_BODY_BYTES} bytes`);
  const path = readString(fields, 'path', fail, { max: MAX_PATH_CHARS });
  if (path !== '' && !path.startsWith('/')) fail('path', 'empty or a path starting with "/"');
  return {
    type: 'deliver',
    eventId,
    channelId: readString(fields, 'channelId', fail, { min: 1, max: ID_MAX }),
    channelName: readString(fields, 'channelName', fail, { min: 1, max: 200 }),
    attempt: readInt(fields, 'attempt', fail, 1, 1_000_000),
    method: readString(fields, 'method', fail, { min: 1, max: MAX_METHOD_CHARS }),
    path,
    query: readString(fields, 'query', fail, { max: MAX_QUERY_CHARS }),
    headers: readHeaderPairs(fields, 'headers', fail, MAX_HEADER_PAIRS),
    originalUrl: readString(fields, 'originalUrl', fail, { min: 1, max: MAX_ORIGINAL_URL_CHARS }),
    remoteAddress: readString(fields, 'remoteAddress', fail, { max: MAX_REMOTE_ADDRESS_CHARS }),
    receivedAt: readInt(fields, 'receivedAt', fail, 0, TS_MAX),
    wantResponse: readBoolean(fields, 'wantResponse', fail),
    skipRoutes: readNames(fields, 'skipRoutes', fail),
    replay: readInt(fields, 'replay', fail, 0, 1_000_000),
    body,
  };
}

/**
 * Validates a frame sent by the relay. Throws `ProtocolError` on anything else, and its subclass
 * `DeliverRefusedError` for a `deliver` that names its event but breaks a bound.
 */
export function decodeRelayFrame(data: Buffer): RelayFrame {
  const { fields, body } = split(data, MAX_RELAY_FRAME_BYTES);
  const type = fields['type'];
  const fail = failer(String(type));
  switch (type) {
    case 'welcome': {
      noBody(type, body);
      const welcome: RelayFrame = {
        type,
        sessionId: readString(fields, 'sessionId', fail, { min: 1, max: ID_MAX }),
        heartbeatMs: readInt(fields, 'heartbeatMs', fail, 10, 3_600_000),
        window: readInt(fields, 'window', fail, 1, MAX_WINDOW),
        channels: readChannels(fields, fail),
      };
      if (fields['answers'] !== undefined) welcome.answers = readBoolean(fields, 'answers', fail);
      return welcome;
    }
    case 'deliver':
      return decodeDeliver(fields, body);
    case 'ping':
    case 'pong':
      noBody(type, body);
      return { type, ts: readInt(fields, 'ts', fail, 0, TS_MAX) };
    case 'goaway':
      noBody(type, body);
      return {
        type,
        reason: readString(fields, 'reason', fail, { max: 200 }),
        reconnectAfterMs: readInt(fields, 'reconnectAfterMs', fail, 0, 3_600_000),
      };
    default:
      return unknownType(type);
  }
}
