/**
 * Standard Webhooks (Svix and others): `webhook-id`, `webhook-timestamp`, and
 * `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256 of
 * "{id}.{timestamp}.{body}">`, keyed with the base64-decoded part of the `whsec_` secret. Any
 * `v1` entry may match; other versions (`v1a`, asymmetric) are ignored.
 * https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import { headerValue } from '../../shared/http.ts';
import {
  anyMatch,
  BODY_REPLAY_MS,
  checkTimestamp,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  onlyFields,
  POST_ONLY,
  readSecrets,
  replayKeyOver,
  secretsOf,
  type Secrets,
  SECRET_FIELDS,
} from './common.ts';
import { decodeBase64, decodeBase64Key } from './decode.ts';
import type { Verifier } from './verifier.ts';

export type StandardWebhooksConfig = Secrets & {
  provider: 'standard-webhooks';
};

const ENTRY = /^(v[0-9]+[a-z]*),(.+)$/;

/** The HMAC key: base64 after an optional `whsec_` prefix (the spec's libraries take both). */
function keyOf(secret: string): Buffer | undefined {
  return decodeBase64Key(secret.startsWith('whsec_') ? secret.slice(6) : secret);
}

export const standardWebhooks: Verifier<StandardWebhooksConfig> = {
  provider: 'standard-webhooks',
  methods: POST_ONLY,
  parse(raw, fail) {
    onlyFields(raw, SECRET_FIELDS, fail);
    const secrets = readSecrets(raw, fail);
    for (const key of ['secret', 'previousSecret'] as const) {
      const value = secrets[key];
      if (value !== undefined && keyOf(value) === undefined) {
        fail(key, '"whsec_" followed by the base64 key');
      }
    }
    return { provider: 'standard-webhooks', ...secrets };
  },
  verify(config, request) {
    const header = headerValue(request.headers, 'webhook-signature');
    if (header === undefined) return MISSING;
    const id = headerValue(request.headers, 'webhook-id');
    if (id === undefined || id === '') return { ok: false, reason: 'missing_id' };
    const timestamp = headerValue(request.headers, 'webhook-timestamp');
    const time = checkTimestamp(timestamp, request.now);
    if (!time.ok) return time;
    const given: Buffer[] = [];
    for (const entry of header.split(' ')) {
      const match = ENTRY.exec(entry);
      if (!match) return MALFORMED;
      if (match[1] !== 'v1') continue;
      const signature = decodeBase64(match[2]!, 32);
      if (!signature) return MALFORMED;
      given.push(signature);
    }
    if (given.length === 0) return MISSING;
    // Parsed at startup already; a key that no longer decodes simply matches nothing.
    const keys = secretsOf(config).flatMap((s) => keyOf(s) ?? []);
    const parts = [`${id}.${timestamp}.`, request.body];
    return anyMatch('sha256', keys, parts, given) ? OK : MISMATCH;
  },
  replayKey(_config, request) {
    // The spec makes `webhook-id` the message's identity: a sender's retry reuses it with a new
    // timestamp and signature, so it is kept as long as a body-only key, not just the window.
    const id = headerValue(request.headers, 'webhook-id') ?? '';
    return replayKeyOver('standard-webhooks', BODY_REPLAY_MS, [id]);
  },
};
