/**
 * Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` with the app's
 * signing secret, the timestamp from `X-Slack-Request-Timestamp`.
 * https://api.slack.com/authentication/verifying-requests-from-slack
 */
import { isObject } from '../../shared/fields.ts';
import { headerValue } from '../../shared/http.ts';
import {
  anyMatch,
  checkTimestamp,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  POST_ONLY,
  replayKeyOver,
  secretsOf,
  TIMESTAMPED_REPLAY_MS,
  type Secrets,
  parseSecrets,
} from './common.ts';
import { decodeHex } from './decode.ts';
import type { SignedRequest, Verifier, VerifyResult } from './verifier.ts';

export type SlackConfig = Secrets & {
  provider: 'slack';
};

const PREFIX = 'v0=';
/** A `url_verification` body is a few hundred bytes; nothing larger is parsed to find one. */
const MAX_CHALLENGE_BODY = 4096;
const MAX_CHALLENGE = 1024;

/** The challenge of an Events API `url_verification` request, or undefined. */
function challengeOf(body: Buffer): string | undefined {
  if (body.length > MAX_CHALLENGE_BODY) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(parsed) || parsed['type'] !== 'url_verification') return undefined;
  const challenge = parsed['challenge'];
  if (typeof challenge !== 'string' || challenge.length === 0) return undefined;
  return challenge.length <= MAX_CHALLENGE ? challenge : undefined;
}

function verify(config: SlackConfig, request: SignedRequest): VerifyResult {
  const header = headerValue(request.headers, 'x-slack-signature');
  if (header === undefined) return MISSING;
  const timestamp = headerValue(request.headers, 'x-slack-request-timestamp');
  const time = checkTimestamp(timestamp, request.now);
  if (!time.ok) return time;
  const given = header.startsWith(PREFIX) ? decodeHex(header.slice(PREFIX.length), 32) : undefined;
  if (!given) return MALFORMED;
  const parts = [`v0:${timestamp}:`, request.body];
  return anyMatch('sha256', secretsOf(config), parts, [given]) ? OK : MISMATCH;
}

export const slack: Verifier<SlackConfig> = {
  provider: 'slack',
  methods: POST_ONLY,
  parse: (raw, fail) => parseSecrets('slack', raw, fail),
  verify,
  replayKey(_config, request) {
    const timestamp = headerValue(request.headers, 'x-slack-request-timestamp') ?? '';
    return replayKeyOver('slack', TIMESTAMPED_REPLAY_MS, [`v0:${timestamp}:`, request.body]);
  },
  handshake(config, request) {
    // Slack signs the check like any event: only a verified one is answered.
    if (request.method !== 'POST') return null;
    const challenge = challengeOf(request.body);
    if (challenge === undefined || !verify(config, request).ok) return null;
    return { status: 200, contentType: 'application/json', body: JSON.stringify({ challenge }) };
  },
};
