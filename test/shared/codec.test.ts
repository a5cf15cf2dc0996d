import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  answerStart,
  decodeAgentFrame,
  decodeRelayFrame,
  encodeFrame,
  withoutAnswer,
} from '../../shared/codec.ts';
import { DeliverRefusedError, ProtocolError, type ErrorCode } from '../../shared/errors.ts';
import {
  MAX_AGENT_FRAME_BYTES,
  MAX_ANSWER_BODY_BYTES,
  MAX_ANSWER_HEADER_BYTES,
  MAX_BODY_BYTES,
  MAX_FRAME_HEADER_BYTES,
  MAX_HEADER_PAIRS,
  MAX_RELAY_FRAME_BYTES,
  MAX_RESPONSE_BODY_BYTES,
  MAX_WINDOW,
  PROTOCOL_VERSION,
  type AgentFrame,
  type RelayFrame,
} from '../../shared/protocol.ts';

/** Bytes that are not valid UTF-8 (a lone continuation byte, an overlong NUL, 0xff). */
const NOT_UTF8 = Buffer.from([0x00, 0x80, 0xc0, 0x80, 0xff, 0xfe, 0x7b, 0x22]);

/** A frame assembled by hand: 4-byte length, JSON text, body bytes. */
function raw(fields: unknown, body: Buffer = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(fields), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(json.length, 0);
  return Buffer.concat([head, json, body]);
}

function rawText(text: string, declaredLength?: number): Buffer {
  const json = Buffer.from(text, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(declaredLength ?? json.length, 0);
  return Buffer.concat([head, json]);
}

function assertCode(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, 400);
    if (message) assert.match(err.message, message);
    return true;
  });
}

// ---- round trips ---------------------------------------------------------------------------

const helloFrame: AgentFrame = { type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: '0.1.0' };
const ackMinimal: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01hx',
  outcome: 'delivered',
  durationMs: 12,
};
const ackFull: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01hy',
  outcome: 'failed',
  status: 503,
  error: 'app answered 503',
  durationMs: 0,
  retryAfterMs: 7000,
  responseHeaders: [
    ['Content-Type', 'application/octet-stream'],
    ['Set-Cookie', 'a=1'],
    ['Set-Cookie', 'b=2'],
  ],
  body: Buffer.from(NOT_UTF8),
};
const ackNoRoute: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01hz',
  outcome: 'no_route',
  durationMs: 0,
  responseHeaders: [],
  body: Buffer.alloc(0),
};

const ackAnswer: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01ha',
  outcome: 'failed',
  status: 500,
  error: 'app answered 500',
  durationMs: 4,
  response: {
    headers: [
      ['content-type', 'text/plain'],
      ['set-cookie', '[redacted]'],
    ],
    bodyBytes: 5000,
    truncated: true,
  },
  body: Buffer.alloc(MAX_ANSWER_BODY_BYTES, 0xff),
};
const ackAnswerSync: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01hb',
  outcome: 'delivered',
  status: 200,
  durationMs: 4,
  responseHeaders: [['content-type', 'text/xml']],
  response: { headers: [['content-type', 'text/xml']], bodyBytes: 3, truncated: false },
  body: Buffer.from('<R>'),
};
const ackAnswerEmpty: AgentFrame = {
  type: 'ack',
  eventId: 'evt_01hc',
  outcome: 'delivered',
  status: 204,
  durationMs: 1,
  response: { headers: [], bodyBytes: 0, truncated: false },
  body: Buffer.alloc(0),
};

const agentFrames: [string, AgentFrame][] = [
  ['hello', helloFrame],
  ['ack (minimal)', ackMinimal],
  ['ack (all fields, invalid UTF-8 response body)', ackFull],
  ['ack (empty response)', ackNoRoute],
  ['ack (the answer kept: 2048 first bytes of 5000)', ackAnswer],
  ['ack (the answer kept, with the whole sync response)', ackAnswerSync],
  ['ack (the answer kept: empty body)', ackAnswerEmpty],
  ['ping', { type: 'ping', ts: 1_700_000_000_000 }],
  ['pong', { type: 'pong', ts: 0 }],
];

const deliverFrame: RelayFrame = {
  type: 'deliver',
  eventId: 'evt_01j0',
  channelId: 'ch_3ktmd9xq',
  channelName: 'github',
  attempt: 3,
  method: 'POST',
  path: '/push/x%2Fy',
  query: 'a=1&b=%ZZ&a=2',
  headers: [
    ['Host', 'relay.example.com'],
    ['X-Hub-Signature-256', 'sha256=abc'],
    ['x-dup', '1'],
    ['x-dup', '2'],
    ['x-empty', ''],
  ],
  originalUrl: 'https://relay.example.com/h/ch_3ktmd9xq/push/x%2Fy?a=1&b=%ZZ&a=2',
  remoteAddress: '203.0.113.9',
  receivedAt: 1_700_000_000_123,
  wantResponse: true,
  skipRoutes: ['github#0'],
  replay: 2,
  body: Buffer.concat([NOT_UTF8, Buffer.from('{"json": "after"}')]),
};

const relayFrames: [string, RelayFrame][] = [
  [
    'welcome',
    {
      type: 'welcome',
      sessionId: 'ses_abc',
      heartbeatMs: 15_000,
      window: 64,
      channels: [
        { id: 'ch_a', name: 'github' },
        { id: 'ch_b', name: 'stripe' },
      ],
    },
  ],
  [
    'welcome (no channels)',
    { type: 'welcome', sessionId: 's', heartbeatMs: 10, window: 1, channels: [] },
  ],
  [
    'welcome (takes answers)',
    { type: 'welcome', sessionId: 's', heartbeatMs: 10, window: 1, channels: [], answers: true },
  ],
  ['deliver (invalid UTF-8 body)', deliverFrame],
  [
    'deliver (empty body, empty path and query)',
    {
      ...deliverFrame,
      path: '',
      query: '',
      headers: [],
      wantResponse: false,
      body: Buffer.alloc(0),
    },
  ],
  ['ping', { type: 'ping', ts: 5 }],
  ['pong', { type: 'pong', ts: Number.MAX_SAFE_INTEGER }],
  ['goaway', { type: 'goaway', reason: 'relay shutting down', reconnectAfterMs: 2500 }],
];

for (const [name, frame] of agentFrames) {
  test(`agent frame round trip: ${name}`, () => {
    const decoded = decodeAgentFrame(encodeFrame(frame));
    assert.deepEqual(decoded, frame);
  });
}

for (const [name, frame] of relayFrames) {
  test(`relay frame round trip: ${name}`, () => {
    const decoded = decodeRelayFrame(encodeFrame(frame));
    assert.deepEqual(decoded, frame);
  });
}

test('bodies travel as raw bytes after the JSON part, not inside it', () => {
  const encoded = encodeFrame(deliverFrame);
  const jsonLength = encoded.readUInt32BE(0);
  const fields: unknown = JSON.parse(encoded.toString('utf8', 4, 4 + jsonLength));
  assert.equal(typeof fields === 'object' && fields !== null && 'body' in fields, false);
  const body = deliverFrame.type === 'deliver' ? deliverFrame.body : new Uint8Array();
  assert.equal(encoded.length, 4 + jsonLength + body.length);
  assert.deepEqual(encoded.subarray(4 + jsonLength), Buffer.from(body));
});

test('a frame of one direction is an unknown type in the other', () => {
  assertCode(() => decodeAgentFrame(encodeFrame(relayFrames[0]![1])), 'ERR_PROTOCOL_UNKNOWN_TYPE');
  assertCode(() => decodeAgentFrame(encodeFrame(deliverFrame)), 'ERR_PROTOCOL_UNKNOWN_TYPE');
  assertCode(() => decodeRelayFrame(encodeFrame(helloFrame)), 'ERR_PROTOCOL_UNKNOWN_TYPE');
  assertCode(() => decodeRelayFrame(encodeFrame(ackMinimal)), 'ERR_PROTOCOL_UNKNOWN_TYPE');
});

// ---- framing errors ------------------------------------------------------------------------

const decoders: [string, (data: Buffer) => unknown][] = [
  ['decodeAgentFrame', decodeAgentFrame],
  ['decodeRelayFrame', decodeRelayFrame],
];

for (const [name, decode] of decoders) {
  test(`${name}: frames shorter than 4 bytes are malformed`, () => {
    for (const data of [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 0, 0])]) {
      assertCode(() => decode(data), 'ERR_PROTOCOL_MALFORMED', /shorter than 4 bytes/);
    }
  });

  test(`${name}: a header length past the end of the frame is malformed`, () => {
    const text = '{"type":"ping","ts":1}';
    assertCode(
      () => decode(rawText(text, text.length + 1)),
      'ERR_PROTOCOL_MALFORMED',
      /bad frame header length/,
    );
    assertCode(() => decode(rawText('', 0xffffffff)), 'ERR_PROTOCOL_MALFORMED');
    assertCode(() => decode(Buffer.from([0, 0, 0, 1])), 'ERR_PROTOCOL_MALFORMED');
  });

  test(`${name}: a header length over MAX_FRAME_HEADER_BYTES is malformed even when present`, () => {
    const padded = `{"type":"ping","ts":1${' '.repeat(MAX_FRAME_HEADER_BYTES)}}`;
    assertCode(() => decode(rawText(padded)), 'ERR_PROTOCOL_MALFORMED', /bad frame header length/);
  });

  test(`${name}: JSON that is not an object is malformed`, () => {
    for (const text of ['[]', '[{"type":"ping","ts":1}]', '"ping"', '42', 'null', 'true']) {
      assertCode(() => decode(rawText(text)), 'ERR_PROTOCOL_MALFORMED', /not a JSON object/);
    }
  });

  test(`${name}: fields that are not JSON are malformed`, () => {
    for (const text of ['', '{', '{"type":"ping",}', "{'type':'ping'}", 'ping']) {
      assertCode(() => decode(rawText(text)), 'ERR_PROTOCOL_MALFORMED', /not valid JSON/);
    }
    const badUtf8 = Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from([0xff, 0xfe])]);
    assertCode(() => decode(badUtf8), 'ERR_PROTOCOL_MALFORMED', /not valid JSON/);
  });

  test(`${name}: an unknown or missing type is refused`, () => {
    for (const fields of [
      { type: 'nope' },
      {},
      { type: 1 },
      { type: null },
      { type: 'PING', ts: 1 },
      { type: 'toString' },
      { type: '__proto__' },
    ]) {
      assertCode(() => decode(raw(fields)), 'ERR_PROTOCOL_UNKNOWN_TYPE', /unknown frame type/);
    }
  });
}

test('decodeAgentFrame: a frame over MAX_AGENT_FRAME_BYTES is too large', () => {
  const big = Buffer.alloc(MAX_AGENT_FRAME_BYTES + 1);
  assertCode(() => decodeAgentFrame(big), 'ERR_PROTOCOL_FRAME_TOO_LARGE');
  // Even a well-formed ack whose body would push it over the limit.
  const ack = encodeFrame({
    ...ackNoRoute,
    body: Buffer.alloc(MAX_AGENT_FRAME_BYTES),
  });
  assertCode(() => decodeAgentFrame(ack), 'ERR_PROTOCOL_FRAME_TOO_LARGE');
});

test('decodeRelayFrame: a frame over MAX_RELAY_FRAME_BYTES is too large', () => {
  const big = Buffer.alloc(MAX_RELAY_FRAME_BYTES + 1);
  assertCode(() => decodeRelayFrame(big), 'ERR_PROTOCOL_FRAME_TOO_LARGE');
});

test('body size limits: exactly the maximum decodes, one byte more is refused', () => {
  const ackAtLimit = encodeFrame({ ...ackNoRoute, body: Buffer.alloc(MAX_RESPONSE_BODY_BYTES) });
  const ack = decodeAgentFrame(ackAtLimit);
  assert.equal(ack.type === 'ack' ? ack.body?.length : -1, MAX_RESPONSE_BODY_BYTES);
  const ackOver = encodeFrame({ ...ackNoRoute, body: Buffer.alloc(MAX_RESPONSE_BODY_BYTES + 1) });
  assertCode(() => decodeAgentFrame(ackOver), 'ERR_PROTOCOL_BAD_FIELD', /^ack\.body:/);

  const deliverAtLimit = encodeFrame({ ...deliverFrame, body: Buffer.alloc(MAX_BODY_BYTES) });
  const deliver = decodeRelayFrame(deliverAtLimit);
  assert.equal(deliver.type === 'deliver' ? deliver.body.length : -1, MAX_BODY_BYTES);
  const deliverOver = encodeFrame({ ...deliverFrame, body: Buffer.alloc(MAX_BODY_BYTES + 1) });
  assertCode(() => decodeRelayFrame(deliverOver), 'ERR_PROTOCOL_BAD_FIELD', /^deliver\.body:/);
});

// ---- the app's answer in an ack ------------------------------------------------------------

test('answerStart: the ack body itself, or the first 2048 bytes of a whole sync response', () => {
  assert.deepEqual(
    answerStart(ackAnswer as Extract<AgentFrame, { type: 'ack' }>),
    ackAnswer.type === 'ack' ? ackAnswer.body : null,
  );
  const whole = Buffer.alloc(5000, 7);
  const sync = decodeAgentFrame(
    encodeFrame({
      ...ackAnswerSync,
      response: { headers: [], bodyBytes: 5000, truncated: true },
      body: whole,
    }),
  );
  assert.equal(sync.type, 'ack');
  if (sync.type !== 'ack') return;
  assert.equal(sync.body?.length, 5000);
  assert.deepEqual(Buffer.from(answerStart(sync)), whole.subarray(0, MAX_ANSWER_BODY_BYTES));
  assert.equal(answerStart(ackMinimal as Extract<AgentFrame, { type: 'ack' }>).length, 0);
});

test('withoutAnswer: what a relay that does not take answers gets, decodable as before', () => {
  const plain = withoutAnswer(ackAnswer);
  assert.deepEqual(plain, {
    type: 'ack',
    eventId: 'evt_01ha',
    outcome: 'failed',
    status: 500,
    error: 'app answered 500',
    durationMs: 4,
  });
  const sync = withoutAnswer(ackAnswerSync);
  assert.deepEqual(sync, {
    type: 'ack',
    eventId: 'evt_01hb',
    outcome: 'delivered',
    status: 200,
    durationMs: 4,
    responseHeaders: [['content-type', 'text/xml']],
    body: Buffer.from('<R>'),
  });
  // A relay from before refuses a body without responseHeaders: what is left has none.
  for (const frame of [plain, sync]) {
    const encoded = encodeFrame(frame);
    const json = JSON.parse(encoded.toString('utf8', 4, 4 + encoded.readUInt32BE(0))) as object;
    assert.equal('response' in json, false);
    assert.deepEqual(decodeAgentFrame(encoded), frame);
  }
  assert.equal(withoutAnswer(ackMinimal), ackMinimal);
  assert.equal(withoutAnswer(helloFrame), helloFrame);
});

test('an answer whose headers exceed 8192 bytes is refused; exactly 8192 decodes', () => {
  // 8 pairs of 1024 bytes each: name 4 + value 1016 + 4.
  const pairs = (last: number): [string, string][] =>
    Array.from({ length: 8 }, (_, i) => [`x-${i}0`, 'v'.repeat(i === 7 ? last : 1016)]);
  const at = {
    ...ackAnswerEmpty,
    response: { headers: pairs(1016), bodyBytes: 0, truncated: false },
  };
  const decoded = decodeAgentFrame(encodeFrame(at));
  assert.equal(decoded.type === 'ack' ? decoded.response?.headers.length : -1, 8);
  assert.equal(MAX_ANSWER_HEADER_BYTES, 8 * 1024);
  const over = {
    ...ackAnswerEmpty,
    response: { headers: pairs(1017), bodyBytes: 0, truncated: false },
  };
  assertCode(
    () => decodeAgentFrame(encodeFrame(over)),
    'ERR_PROTOCOL_BAD_FIELD',
    /^ack\.response\.headers: expected at most 8192 bytes/,
  );
});

test('an answer is refused when the bytes sent do not match what it says', () => {
  const answer = { headers: [], bodyBytes: 10, truncated: false };
  const base = { type: 'ack', eventId: 'evt_1', outcome: 'failed', durationMs: 1, status: 500 };
  const cases: [string, Record<string, unknown>, Buffer, RegExp][] = [
    ['fewer bytes than bodyBytes', { ...base, response: answer }, Buffer.alloc(9), /^ack\.body:/],
    ['more bytes than bodyBytes', { ...base, response: answer }, Buffer.alloc(11), /^ack\.body:/],
    [
      'more than 2048 bytes without responseHeaders',
      { ...base, response: { ...answer, bodyBytes: 4000, truncated: true } },
      Buffer.alloc(4000),
      /^ack\.body:/,
    ],
    [
      'a long body not marked truncated',
      { ...base, response: { ...answer, bodyBytes: 4000 } },
      Buffer.alloc(MAX_ANSWER_BODY_BYTES),
      /^ack\.response\.truncated:/,
    ],
    [
      'a sync response of another length than bodyBytes',
      { ...base, responseHeaders: [], response: answer },
      Buffer.alloc(12),
      /^ack\.response\.bodyBytes:/,
    ],
    ['response null', { ...base, response: null }, Buffer.alloc(0), /^ack\.response:/],
    ['response a list', { ...base, response: [] }, Buffer.alloc(0), /^ack\.response:/],
    [
      'response without headers',
      { ...base, response: { bodyBytes: 0, truncated: false } },
      Buffer.alloc(0),
      /^ack\.response\.headers:/,
    ],
    [
      'response headers not pairs',
      { ...base, response: { ...answer, bodyBytes: 0, headers: [['a']] } },
      Buffer.alloc(0),
      /^ack\.response\.headers:/,
    ],
    [
      'bodyBytes -1',
      { ...base, response: { ...answer, bodyBytes: -1 } },
      Buffer.alloc(0),
      /^ack\.response\.bodyBytes:/,
    ],
    [
      'truncated "no"',
      { ...base, response: { ...answer, bodyBytes: 0, truncated: 'no' } },
      Buffer.alloc(0),
      /^ack\.response\.truncated:/,
    ],
  ];
  for (const [what, fields, body, message] of cases) {
    assert.throws(
      () => decodeAgentFrame(raw(fields, body)),
      (err: unknown) =>
        err instanceof ProtocolError &&
        err.code === 'ERR_PROTOCOL_BAD_FIELD' &&
        message.test(err.message),
      what,
    );
  }
});

// ---- bodies on frames that carry none ------------------------------------------------------

test('a body on an agent frame that carries none is malformed', () => {
  const body = Buffer.from([1]);
  const frames: Record<string, unknown>[] = [
    { type: 'hello', protocol: 1, agentVersion: '1' },
    { type: 'ping', ts: 1 },
    { type: 'pong', ts: 1 },
    // An ack carries a body only together with responseHeaders or response.
    { type: 'ack', eventId: 'evt_1', outcome: 'delivered', durationMs: 1 },
  ];
  for (const fields of frames) {
    assertCode(
      () => decodeAgentFrame(raw(fields, body)),
      'ERR_PROTOCOL_MALFORMED',
      /carries no body/,
    );
    // The same frame without a body is fine.
    assert.equal(decodeAgentFrame(raw(fields)).type, fields['type']);
  }
});

test('a body on a relay frame that carries none is malformed', () => {
  const body = Buffer.from('x');
  const frames: Record<string, unknown>[] = [
    { type: 'welcome', sessionId: 's', heartbeatMs: 1000, window: 1, channels: [] },
    { type: 'ping', ts: 1 },
    { type: 'pong', ts: 1 },
    { type: 'goaway', reason: '', reconnectAfterMs: 0 },
  ];
  for (const fields of frames) {
    assertCode(
      () => decodeRelayFrame(raw(fields, body)),
      'ERR_PROTOCOL_MALFORMED',
      /carries no body/,
    );
    assert.equal(decodeRelayFrame(raw(fields)).type, fields['type']);
  }
});

// ---- fields (table-driven) -----------------------------------------------------------------

type Case = [description: string, fields: Record<string, unknown>, field: string];

function without(fields: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...fields };
  delete copy[key];
  return copy;
}

const hello = { type: 'hello', protocol: 1, agentVersion: '0.1.0' };
const ack = { type: 'ack', eventId: 'evt_1', outcome: 'failed', durationMs: 3 };
const welcome = {
  type: 'welcome',
  sessionId: 'ses_1',
  heartbeatMs: 15_000,
  window: 8,
  channels: [],
};
const deliver: Record<string, unknown> = {
  type: 'deliver',
  eventId: 'evt_1',
  channelId: 'ch_1',
  channelName: 'github',
  attempt: 1,
  method: 'POST',
  path: '/x',
  query: '',
  headers: [['a', 'b']],
  originalUrl: 'https://relay.example.com/h/ch_1/x',
  remoteAddress: '203.0.113.9',
  receivedAt: 1,
  wantResponse: false,
  skipRoutes: [],
  replay: 0,
};
const goaway = { type: 'goaway', reason: 'bye', reconnectAfterMs: 10 };

const agentCases: Case[] = [
  ['hello without protocol', without(hello, 'protocol'), 'hello.protocol'],
  ['hello with protocol "1"', { ...hello, protocol: '1' }, 'hello.protocol'],
  ['hello with protocol 1.5', { ...hello, protocol: 1.5 }, 'hello.protocol'],
  ['hello with protocol -1', { ...hello, protocol: -1 }, 'hello.protocol'],
  ['hello with protocol 65536', { ...hello, protocol: 65_536 }, 'hello.protocol'],
  ['hello without agentVersion', without(hello, 'agentVersion'), 'hello.agentVersion'],
  ['hello with agentVersion 1', { ...hello, agentVersion: 1 }, 'hello.agentVersion'],
  [
    'hello with a 65-char agentVersion',
    { ...hello, agentVersion: 'v'.repeat(65) },
    'hello.agentVersion',
  ],
  ['ack without eventId', without(ack, 'eventId'), 'ack.eventId'],
  ['ack with empty eventId', { ...ack, eventId: '' }, 'ack.eventId'],
  ['ack with a 65-char eventId', { ...ack, eventId: 'e'.repeat(65) }, 'ack.eventId'],
  ['ack with eventId 7', { ...ack, eventId: 7 }, 'ack.eventId'],
  ['ack without outcome', without(ack, 'outcome'), 'ack.outcome'],
  ['ack with outcome "ok"', { ...ack, outcome: 'ok' }, 'ack.outcome'],
  ['ack with outcome true', { ...ack, outcome: true }, 'ack.outcome'],
  ['ack without durationMs', without(ack, 'durationMs'), 'ack.durationMs'],
  ['ack with durationMs -1', { ...ack, durationMs: -1 }, 'ack.durationMs'],
  ['ack with durationMs "3"', { ...ack, durationMs: '3' }, 'ack.durationMs'],
  ['ack with status "200"', { ...ack, status: '200' }, 'ack.status'],
  ['ack with status 99', { ...ack, status: 99 }, 'ack.status'],
  ['ack with status 1000', { ...ack, status: 1000 }, 'ack.status'],
  ['ack with status null', { ...ack, status: null }, 'ack.status'],
  ['ack with error 5', { ...ack, error: 5 }, 'ack.error'],
  ['ack with a 1025-char error', { ...ack, error: 'x'.repeat(1025) }, 'ack.error'],
  ['ack with retryAfterMs -5', { ...ack, retryAfterMs: -5 }, 'ack.retryAfterMs'],
  ['ack with retryAfterMs "5"', { ...ack, retryAfterMs: '5' }, 'ack.retryAfterMs'],
  ['ack with responseHeaders {}', { ...ack, responseHeaders: {} }, 'ack.responseHeaders'],
  ['ack with responseHeaders null', { ...ack, responseHeaders: null }, 'ack.responseHeaders'],
  ['ping without ts', { type: 'ping' }, 'ping.ts'],
  ['ping with ts "1"', { type: 'ping', ts: '1' }, 'ping.ts'],
  ['ping with ts 1.25', { type: 'ping', ts: 1.25 }, 'ping.ts'],
  ['pong with ts -1', { type: 'pong', ts: -1 }, 'pong.ts'],
  ['pong with ts past MAX_SAFE_INTEGER', { type: 'pong', ts: 2 ** 53 + 2 }, 'pong.ts'],
];

const relayCases: Case[] = [
  ['welcome without sessionId', without(welcome, 'sessionId'), 'welcome.sessionId'],
  ['welcome with empty sessionId', { ...welcome, sessionId: '' }, 'welcome.sessionId'],
  ['welcome with heartbeatMs 9', { ...welcome, heartbeatMs: 9 }, 'welcome.heartbeatMs'],
  [
    'welcome with heartbeatMs 3600001',
    { ...welcome, heartbeatMs: 3_600_001 },
    'welcome.heartbeatMs',
  ],
  ['welcome without heartbeatMs', without(welcome, 'heartbeatMs'), 'welcome.heartbeatMs'],
  ['welcome with window 0', { ...welcome, window: 0 }, 'welcome.window'],
  ['welcome with window MAX_WINDOW + 1', { ...welcome, window: MAX_WINDOW + 1 }, 'welcome.window'],
  ['welcome with window "8"', { ...welcome, window: '8' }, 'welcome.window'],
  ['welcome with answers "yes"', { ...welcome, answers: 'yes' }, 'welcome.answers'],
  ['welcome with answers null', { ...welcome, answers: null }, 'welcome.answers'],
  ['welcome without channels', without(welcome, 'channels'), 'welcome.channels'],
  ['welcome with channels {}', { ...welcome, channels: {} }, 'welcome.channels'],
  [
    'welcome with a channel that is a string',
    { ...welcome, channels: ['ch_1'] },
    'welcome.channels',
  ],
  ['welcome with a channel without id', { ...welcome, channels: [{ name: 'a' }] }, 'welcome.id'],
  [
    'welcome with a channel with empty name',
    { ...welcome, channels: [{ id: 'ch_1', name: '' }] },
    'welcome.name',
  ],
  ['goaway without reason', without(goaway, 'reason'), 'goaway.reason'],
  ['goaway with reason 1', { ...goaway, reason: 1 }, 'goaway.reason'],
  [
    'goaway with reconnectAfterMs -1',
    { ...goaway, reconnectAfterMs: -1 },
    'goaway.reconnectAfterMs',
  ],
  [
    'goaway with reconnectAfterMs 3600001',
    { ...goaway, reconnectAfterMs: 3_600_001 },
    'goaway.reconnectAfterMs',
  ],
  ['ping with ts null', { type: 'ping', ts: null }, 'ping.ts'],
  ['pong without ts', { type: 'pong' }, 'pong.ts'],
  ['deliver with attempt 0', { ...deliver, attempt: 0 }, 'deliver.attempt'],
  ['deliver with attempt 1.5', { ...deliver, attempt: 1.5 }, 'deliver.attempt'],
  ['deliver with empty method', { ...deliver, method: '' }, 'deliver.method'],
  ['deliver with path "x"', { ...deliver, path: 'x' }, 'deliver.path'],
  ['deliver with path 1', { ...deliver, path: 1 }, 'deliver.path'],
  [
    'deliver with wantResponse "false"',
    { ...deliver, wantResponse: 'false' },
    'deliver.wantResponse',
  ],
  ['deliver with wantResponse 0', { ...deliver, wantResponse: 0 }, 'deliver.wantResponse'],
  ['deliver without skipRoutes', without(deliver, 'skipRoutes'), 'deliver.skipRoutes'],
  ['deliver with skipRoutes a string', { ...deliver, skipRoutes: 'a' }, 'deliver.skipRoutes'],
  ['deliver with an empty route name', { ...deliver, skipRoutes: [''] }, 'deliver.skipRoutes'],
  [
    'deliver with 65 route names',
    { ...deliver, skipRoutes: Array.from({ length: 65 }, (_, i) => `r${i}`) },
    'deliver.skipRoutes',
  ],
  ['deliver without replay', without(deliver, 'replay'), 'deliver.replay'],
  ['deliver with replay -1', { ...deliver, replay: -1 }, 'deliver.replay'],
  ['deliver with empty originalUrl', { ...deliver, originalUrl: '' }, 'deliver.originalUrl'],
  ['deliver with receivedAt -1', { ...deliver, receivedAt: -1 }, 'deliver.receivedAt'],
  [
    'deliver with a 65-char remoteAddress',
    { ...deliver, remoteAddress: 'a'.repeat(65) },
    'deliver.remoteAddress',
  ],
];

// Every required deliver field, missing and with the wrong type.
for (const key of Object.keys(deliver)) {
  if (key === 'type') continue;
  relayCases.push([`deliver without ${key}`, without(deliver, key), `deliver.${key}`]);
  const wrong = typeof deliver[key] === 'string' ? 42 : 'nope';
  relayCases.push([
    `deliver with ${key} ${JSON.stringify(wrong)}`,
    { ...deliver, [key]: wrong },
    `deliver.${key}`,
  ]);
}

for (const [description, fields, field] of agentCases) {
  test(`decodeAgentFrame refuses ${description}`, () => {
    assertCode(
      () => decodeAgentFrame(raw(fields)),
      'ERR_PROTOCOL_BAD_FIELD',
      new RegExp(`^${field.replace('.', '\\.')}: expected `),
    );
  });
}

for (const [description, fields, field] of relayCases) {
  test(`decodeRelayFrame refuses ${description}`, () => {
    // Only deliver carries a body; on other frames a body would be refused first.
    const body = fields['type'] === 'deliver' ? Buffer.from('body') : undefined;
    assertCode(
      () => decodeRelayFrame(raw(fields, body)),
      'ERR_PROTOCOL_BAD_FIELD',
      new RegExp(`^${field.replace('.', '\\.')}: expected `),
    );
    // A deliver that names its event refuses that event only; without an event id the frame
    // (and so the peer) is broken.
    const refusable = field.startsWith('deliver.') && field !== 'deliver.eventId';
    assert.throws(
      () => decodeRelayFrame(raw(fields, body)),
      (err: unknown) => {
        assert.equal(err instanceof DeliverRefusedError, refusable);
        if (err instanceof DeliverRefusedError) {
          assert.equal(err.eventId, 'evt_1');
          assert.equal(err.bodyBytes, 4);
          assert.match(err.reason, new RegExp(`^${field.slice('deliver.'.length)}: expected `));
        }
        return true;
      },
    );
  });
}

// ---- refused delivers ----------------------------------------------------------------------

function refusal(frame: Buffer): DeliverRefusedError {
  try {
    decodeRelayFrame(frame);
  } catch (err) {
    if (err instanceof DeliverRefusedError) return err;
    throw err;
  }
  throw new Error('the frame decoded');
}

test('a deliver with 600 headers is refused for its event, naming the limit', () => {
  const headers = Array.from({ length: 600 }, (_, i) => [`x-h${i}`, 'v']);
  // The same frame with one header fewer than the bound decodes.
  const within = Array.from({ length: MAX_HEADER_PAIRS }, (_, i) => [`x-h${i}`, 'v']);
  const ok = decodeRelayFrame(raw({ ...deliver, headers: within }, Buffer.alloc(10)));
  assert.equal(ok.type, 'deliver');
  const refused = refusal(raw({ ...deliver, eventId: 'evt_many', headers }, Buffer.alloc(10)));
  assert.equal(refused.eventId, 'evt_many');
  assert.equal(refused.bodyBytes, 10);
  assert.equal(
    refused.reason,
    `headers: expected a list of at most ${MAX_HEADER_PAIRS} [name, value] pairs`,
  );
  assert.equal(refused.code, 'ERR_PROTOCOL_BAD_FIELD');
  assert.ok(refused instanceof ProtocolError);
});

test('a deliver body over MAX_BODY_BYTES (frame within bounds) is refused for its event', () => {
  const refused = refusal(raw(deliver, Buffer.alloc(MAX_BODY_BYTES + 1)));
  assert.equal(refused.eventId, 'evt_1');
  assert.equal(refused.bodyBytes, MAX_BODY_BYTES + 1);
  assert.equal(refused.reason, `body: expected at most ${MAX_BODY_BYTES} bytes`);
});

test('a deliver without a readable eventId is a protocol error, even with other bad fields', () => {
  const headers = Array.from({ length: 600 }, () => ['a', 'b']);
  for (const eventId of [undefined, '', 7, 'e'.repeat(65)]) {
    assert.throws(
      () => decodeRelayFrame(raw({ ...deliver, eventId, headers })),
      (err: unknown) =>
        err instanceof ProtocolError &&
        !(err instanceof DeliverRefusedError) &&
        /^deliver\.eventId: expected /.test(err.message),
    );
  }
});

test('a broken deliver frame is never a refusal: bad length, not JSON', () => {
  const json = Buffer.from(JSON.stringify(deliver));
  const lying = Buffer.concat([Buffer.from([0, 0, 0xff, 0xff]), json]);
  const notJson = rawText('{"type":"deliver","eventId":"evt_1",');
  for (const frame of [lying, notJson]) {
    assert.throws(
      () => decodeRelayFrame(frame),
      (err: unknown) =>
        err instanceof ProtocolError &&
        !(err instanceof DeliverRefusedError) &&
        err.code === 'ERR_PROTOCOL_MALFORMED',
    );
  }
});

test('the valid bases of the field tables decode (so each case fails for its one field)', () => {
  assert.equal(decodeAgentFrame(raw(hello)).type, 'hello');
  assert.equal(decodeAgentFrame(raw(ack)).type, 'ack');
  assert.equal(decodeRelayFrame(raw(welcome)).type, 'welcome');
  assert.equal(decodeRelayFrame(raw(deliver, Buffer.from('body'))).type, 'deliver');
  assert.equal(decodeRelayFrame(raw(goaway)).type, 'goaway');
});

// ---- header pairs --------------------------------------------------------------------------

const badHeaderLists: [string, unknown][] = [
  ['a string', 'a: b'],
  ['an object', { a: 'b' }],
  ['a list of strings', ['a', 'b']],
  ['a one-element pair', [['a']]],
  ['a three-element pair', [['a', 'b', 'c']]],
  ['a numeric value', [['a', 1]]],
  ['a numeric name', [[1, 'b']]],
  ['a null value', [['a', null]]],
  ['an empty name', [['', 'b']]],
  ['a pair as an object', [{ 0: 'a', 1: 'b', length: 2 }]],
  ['a good pair then a bad one', [['a', 'b'], ['c']]],
  ['too many pairs', Array.from({ length: MAX_HEADER_PAIRS + 1 }, () => ['a', 'b'])],
];

for (const [description, headers] of badHeaderLists) {
  test(`deliver.headers that is ${description} is refused`, () => {
    assertCode(
      () => decodeRelayFrame(raw({ ...deliver, headers })),
      'ERR_PROTOCOL_BAD_FIELD',
      /^deliver\.headers: expected /,
    );
  });

  test(`ack.responseHeaders that is ${description} is refused`, () => {
    assertCode(
      () => decodeAgentFrame(raw({ ...ack, responseHeaders: headers })),
      'ERR_PROTOCOL_BAD_FIELD',
      /^ack\.responseHeaders: expected /,
    );
  });
}

test('exactly MAX_HEADER_PAIRS header pairs decode, duplicates and order kept', () => {
  const headers = Array.from({ length: MAX_HEADER_PAIRS }, (_, i) => [`h${i % 3}`, `${i}`]);
  const frame = decodeRelayFrame(raw({ ...deliver, headers }));
  assert.equal(frame.type, 'deliver');
  assert.deepEqual(frame.type === 'deliver' ? frame.headers : null, headers);
});

test('ProtocolError is exposed to the peer', () => {
  try {
    decodeAgentFrame(raw({ type: 'nope' }));
    assert.fail('did not throw');
  } catch (err) {
    assert.ok(err instanceof ProtocolError);
    assert.equal(err.expose, true);
    assert.equal(err.name, 'ProtocolError');
  }
});
