import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import {
  handshakeAnswer,
  parseVerifyConfig,
  verifyRequest,
  describeVerifyConfig,
} from '../../server/verify/index.ts';
import type { SignedRequest } from '../../server/verify/index.ts';
import { slack, type SlackConfig } from '../../server/verify/slack.ts';
import type { Fail } from '../../shared/fields.ts';
import type { HeaderPair } from '../../shared/protocol.ts';

// Slack's published example (provider-vectors.md).
const SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const TS = '1531420618';
const BODY =
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
const SIGNATURE = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';
/** A few seconds after the example was signed: the 5-minute window applies. */
const NOW = Number(TS) * 1000 + 4_000;

const config: SlackConfig = { provider: 'slack', secret: SECRET };

function sign(secret: string, timestamp: string, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

function request(
  signature: string | undefined,
  timestamp: string | null = TS,
  body = BODY,
  options: { now?: number; method?: string } = {},
): SignedRequest {
  const headers: HeaderPair[] = [['Content-Type', 'application/x-www-form-urlencoded']];
  if (timestamp !== null) headers.push(['X-Slack-Request-Timestamp', timestamp]);
  if (signature !== undefined) headers.push(['X-Slack-Signature', signature]);
  return {
    method: options.method ?? 'POST',
    url: 'https://relay.example.com/h/ch_1/slack/commands',
    headers,
    body: Buffer.from(body),
    now: options.now ?? NOW,
  };
}

const OK = { ok: true };
const MISMATCH = { ok: false, reason: 'signature_mismatch' };
const MALFORMED = { ok: false, reason: 'malformed_signature' };

test("Slack's published example verifies", () => {
  assert.equal(sign(SECRET, TS, BODY), SIGNATURE);
  assert.deepEqual(slack.verify(config, request(SIGNATURE)), OK);
  assert.deepEqual(verifyRequest(config, request(SIGNATURE)), OK);
});

test('a changed body, timestamp, digest or secret is a mismatch', () => {
  assert.deepEqual(slack.verify(config, request(SIGNATURE, TS, `${BODY}&x=1`)), MISMATCH);
  assert.deepEqual(slack.verify(config, request(SIGNATURE, String(Number(TS) + 1))), MISMATCH);
  const flipped = SIGNATURE.slice(0, -1) + (SIGNATURE.endsWith('3') ? '4' : '3');
  assert.deepEqual(slack.verify(config, request(flipped)), MISMATCH);
  assert.deepEqual(
    slack.verify({ provider: 'slack', secret: 'other' }, request(SIGNATURE)),
    MISMATCH,
  );
});

test('a missing signature or timestamp', () => {
  assert.deepEqual(slack.verify(config, request(undefined)), {
    ok: false,
    reason: 'missing_signature',
  });
  assert.deepEqual(slack.verify(config, request(SIGNATURE, null)), {
    ok: false,
    reason: 'missing_timestamp',
  });
  for (const ts of ['', 'abc', '1531420618.5', '-1531420618', '0x5B476A4A']) {
    assert.deepEqual(
      slack.verify(config, request(sign(SECRET, ts, BODY), ts)),
      { ok: false, reason: 'malformed_timestamp' },
      ts,
    );
  }
});

test('a malformed signature, including the right one followed by garbage', () => {
  const hex = SIGNATURE.slice(3);
  for (const value of [
    `${SIGNATURE}zz`,
    `${SIGNATURE}0`,
    `${SIGNATURE}00`,
    `${SIGNATURE} `,
    hex,
    `v1=${hex}`,
    `V0=${hex}`,
    `v0:${hex}`,
    'v0=',
    SIGNATURE.slice(0, -1),
    `v0=${Buffer.from(hex, 'hex').toString('base64')}`,
    '',
  ]) {
    assert.deepEqual(slack.verify(config, request(value)), MALFORMED, value);
  }
});

test('the 5-minute window, both ways: 300 s away verifies, 300.001 s does not', () => {
  const at = Number(TS) * 1000;
  const late = { ok: false, reason: 'timestamp_out_of_range' };
  const at_ = (now: number) => slack.verify(config, request(SIGNATURE, TS, BODY, { now }));
  assert.deepEqual(at_(at + 300_000), OK);
  assert.deepEqual(at_(at + 300_001), late);
  assert.deepEqual(at_(at - 300_000), OK);
  assert.deepEqual(at_(at - 300_001), late);
  // Today, the published example is a replay.
  assert.deepEqual(at_(1_700_000_000_000), late);
});

test('during a rotation both secrets verify; afterwards only the new one', () => {
  const rotating: SlackConfig = { provider: 'slack', secret: 'new-secret', previousSecret: SECRET };
  assert.deepEqual(slack.verify(rotating, request(SIGNATURE)), OK);
  assert.deepEqual(slack.verify(rotating, request(sign('new-secret', TS, BODY))), OK);
  assert.deepEqual(slack.verify(rotating, request(sign('third', TS, BODY))), MISMATCH);
  assert.deepEqual(
    slack.verify({ provider: 'slack', secret: 'new-secret' }, request(SIGNATURE)),
    MISMATCH,
  );
});

const CHALLENGE = '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P';
const VERIFICATION = JSON.stringify({
  token: 'Jhj5dZrVaK7ZwHHjRyZWjbDl',
  challenge: CHALLENGE,
  type: 'url_verification',
});

function check(body: string, signature: string | undefined, now = NOW): SignedRequest {
  return {
    method: 'POST',
    url: 'https://relay.example.com/h/ch_1',
    headers:
      signature === undefined
        ? []
        : [
            ['Content-Type', 'application/json'],
            ['X-Slack-Request-Timestamp', TS],
            ['X-Slack-Signature', signature],
          ],
    body: Buffer.from(body),
    now,
  };
}

test('a signed url_verification is answered with its challenge as JSON', () => {
  const answer = {
    status: 200,
    contentType: 'application/json',
    body: `{"challenge":"${CHALLENGE}"}`,
  };
  const signed = check(VERIFICATION, sign(SECRET, TS, VERIFICATION));
  assert.deepEqual(slack.handshake?.(config, signed), answer);
  assert.deepEqual(handshakeAnswer(config, signed), answer);
  // A challenge that needs escaping comes back as valid JSON with the same value.
  const odd = JSON.stringify({ type: 'url_verification', challenge: 'a"b\\c</script>' });
  const oddAnswer = handshakeAnswer(config, check(odd, sign(SECRET, TS, odd)));
  assert.deepEqual(JSON.parse(oddAnswer?.body ?? ''), { challenge: 'a"b\\c</script>' });
});

test('an unverified url_verification gets no answer, and then fails verify', () => {
  for (const [name, signed] of [
    ['wrong secret', check(VERIFICATION, sign('forged', TS, VERIFICATION))],
    ['no signature', check(VERIFICATION, undefined)],
    ['stale', check(VERIFICATION, sign(SECRET, TS, VERIFICATION), NOW + 600_000)],
  ] as const) {
    assert.equal(handshakeAnswer(config, signed), null, name);
    assert.equal(verifyRequest(config, signed).ok, false, name);
  }
});

test('anything but a url_verification is no handshake', () => {
  const event = JSON.stringify({ type: 'event_callback', challenge: 'x', event: {} });
  assert.equal(handshakeAnswer(config, check(event, sign(SECRET, TS, event))), null);
  const noChallenge = JSON.stringify({ type: 'url_verification' });
  assert.equal(handshakeAnswer(config, check(noChallenge, sign(SECRET, TS, noChallenge))), null);
  const numeric = JSON.stringify({ type: 'url_verification', challenge: 5 });
  assert.equal(handshakeAnswer(config, check(numeric, sign(SECRET, TS, numeric))), null);
  assert.equal(handshakeAnswer(config, request(SIGNATURE)), null); // a slash command (a form)
  const get = { ...check(VERIFICATION, sign(SECRET, TS, VERIFICATION)), method: 'GET' };
  assert.equal(handshakeAnswer(config, get), null);
});

const fail: Fail = (field, expected) => {
  throw new Error(`${field}: expected ${expected}`);
};

test('parse keeps the secrets; describe shows neither', () => {
  const raw: SlackConfig = { provider: 'slack', secret: SECRET, previousSecret: 'old-secret' };
  assert.deepEqual(parseVerifyConfig({ ...raw }, fail), raw);
  assert.deepEqual(describeVerifyConfig(raw), { provider: 'slack', rotating: true });
  assert.deepEqual(describeVerifyConfig(config), { provider: 'slack', rotating: false });
});

test('parse names each bad field and what it expected', () => {
  const cases: [raw: Record<string, unknown>, message: RegExp][] = [
    [{ provider: 'slack' }, /^Error: verify\.secret: expected a string of 1–1024 characters$/],
    [{ provider: 'slack', secret: 'x'.repeat(1025) }, /^Error: verify\.secret: expected/],
    [{ provider: 'slack', secret: 'x', previousSecret: 7 }, /^Error: verify\.previousSecret: /],
    [
      { provider: 'slack', secret: 'x', signingSecret: 'y' },
      /^Error: verify\.signingSecret: expected one of the fields provider, secret, previousSecret$/,
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(() => parseVerifyConfig(raw, fail), message, JSON.stringify(raw));
  }
});
