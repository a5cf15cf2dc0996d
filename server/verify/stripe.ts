/**
 * Stripe: `Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "{t}.{body}">[,v1=…][,v0=…]`,
 * keyed with the whole `whsec_…` string. Any `v1` may match (Stripe sends one per active
 * secret during its own rotation); other schemes are ignored.
 * https://docs.stripe.com/webhooks#verify-manually
 */
import { headerValue } from '../../shared/http.ts';
import {
  anyMatch,
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
  TIMESTAMPED_REPLAY_MS,
} from './common.ts';
import { decodeHex } from './decode.ts';
import type { Verifier, VerifyResult } from './verifier.ts';

export type StripeConfig = Secrets & {
  provider: 'stripe';
};

const SCHEME = /^[a-z0-9_]+$/;

/** The `t` and every `v1` of a `Stripe-Signature` header, or why it is malformed. */
function parseHeader(header: string): { timestamp?: string; given: Buffer[] } | VerifyResult {
  let timestamp: string | undefined;
  const given: Buffer[] = [];
  for (const item of header.split(',')) {
    const eq = item.indexOf('=');
    const scheme = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (eq <= 0 || value === '' || !SCHEME.test(scheme)) return MALFORMED;
    if (scheme === 't') {
      if (timestamp !== undefined) return MALFORMED;
      timestamp = value;
    } else if (scheme === 'v1') {
      const signature = decodeHex(value, 32);
      if (!signature) return MALFORMED;
      given.push(signature);
    }
  }
  return timestamp === undefined ? { given } : { timestamp, given };
}

export const stripe: Verifier<StripeConfig> = {
  provider: 'stripe',
  methods: POST_ONLY,
  parse(raw, fail) {
    onlyFields(raw, SECRET_FIELDS, fail);
    const secrets = readSecrets(raw, fail);
    for (const key of ['secret', 'previousSecret'] as const) {
      // Every Stripe endpoint secret starts so; anything else (an API key, say) never verifies.
      const value = secrets[key];
      if (value !== undefined && !value.startsWith('whsec_')) {
        fail(key, 'a Stripe endpoint secret starting with "whsec_"');
      }
    }
    return { provider: 'stripe', ...secrets };
  },
  verify(config, request) {
    const header = headerValue(request.headers, 'stripe-signature');
    if (header === undefined) return MISSING;
    const parsed = parseHeader(header);
    if ('ok' in parsed) return parsed;
    const { timestamp, given } = parsed;
    const time = checkTimestamp(timestamp, request.now);
    if (!time.ok) return time;
    if (given.length === 0) return MISSING;
    const parts = [`${timestamp}.`, request.body];
    return anyMatch('sha256', secretsOf(config), parts, given) ? OK : MISMATCH;
  },
  replayKey(_config, request) {
    // What is signed, not the header's text: a replayer may reorder or drop `v1` entries.
    const parsed = parseHeader(headerValue(request.headers, 'stripe-signature') ?? '');
    const timestamp = 'ok' in parsed ? '' : (parsed.timestamp ?? '');
    return replayKeyOver('stripe', TIMESTAMPED_REPLAY_MS, [`${timestamp}.`, request.body]);
  },
};
