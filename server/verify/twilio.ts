/**
 * Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1>` keyed with the account's auth token, over
 * the public URL followed, for a form POST, by each parameter's name and value sorted by name.
 * A JSON body is covered instead by a `bodySHA256` query parameter (hex SHA-256 of the body)
 * in the signed URL. https://www.twilio.com/docs/usage/webhooks/webhooks-security
 */
import { createHash } from 'node:crypto';
import { headerValue } from '../../shared/http.ts';
import { constantTimeEqual } from '../../shared/signing.ts';
import {
  anyMatch,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  queryOf,
  secretsOf,
  type Secrets,
  parseSecrets,
} from './common.ts';
import { decodeBase64, decodeHex } from './decode.ts';
import type { Verifier, VerifyResult } from './verifier.ts';

export type TwilioConfig = Secrets & {
  provider: 'twilio';
};

const FORM = 'application/x-www-form-urlencoded';

function isForm(contentType: string | undefined): boolean {
  return contentType?.split(';')[0]?.trim().toLowerCase() === FORM;
}

/**
 * Name then value of each parameter, sorted by name; a repeated name's values are sorted and
 * deduplicated, as Twilio's own libraries do.
 */
function formSuffix(body: Buffer): string {
  const byName = new Map<string, Set<string>>();
  for (const [name, value] of new URLSearchParams(body.toString('utf8'))) {
    const values = byName.get(name) ?? new Set<string>();
    values.add(value);
    byName.set(name, values);
  }
  const sorted = [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let out = '';
  for (const [name, values] of sorted) for (const value of [...values].sort()) out += name + value;
  return out;
}

/**
 * The URL as received, plus the same URL with and without its default port: Twilio signs
 * one or the other depending on the product, and its libraries accept both.
 */
function urlForms(url: string): string[] {
  const forms = new Set([url]);
  try {
    const parsed = new URL(url);
    const rest = `${parsed.pathname}${parsed.search}`;
    const defaultPort = parsed.protocol === 'https:' ? '443' : '80';
    forms.add(`${parsed.protocol}//${parsed.hostname}:${parsed.port || defaultPort}${rest}`);
    if (parsed.port === '' || parsed.port === defaultPort) {
      forms.add(`${parsed.protocol}//${parsed.hostname}${rest}`);
    }
  } catch {
    // Not a URL the parser takes: only the exact text can match.
  }
  return [...forms];
}

function checkBodyHash(url: string, body: Buffer): VerifyResult {
  const given = decodeHex(queryOf(url).get('bodySHA256') ?? '', 32);
  const actual = createHash('sha256').update(body).digest();
  if (!given || !constantTimeEqual(actual, given)) {
    return { ok: false, reason: 'body_hash_mismatch' };
  }
  return OK;
}

export const twilio: Verifier<TwilioConfig> = {
  provider: 'twilio',
  parse: (raw, fail) => parseSecrets('twilio', raw, fail),
  verify(config, request) {
    const header = headerValue(request.headers, 'x-twilio-signature');
    if (header === undefined) return MISSING;
    const given = decodeBase64(header, 20);
    if (!given) return MALFORMED;
    let suffix = '';
    if (queryOf(request.url).has('bodySHA256')) {
      // A JSON body: the signed URL carries its hash, and the signature covers the URL alone.
      const hash = checkBodyHash(request.url, request.body);
      if (!hash.ok) return hash;
    } else if (request.method === 'POST' && isForm(headerValue(request.headers, 'content-type'))) {
      suffix = formSuffix(request.body);
    } else if (request.body.length > 0) {
      // Neither the parameters nor a hash would cover this body: anyone could change it.
      return { ok: false, reason: 'missing_body_hash' };
    }
    const keys = secretsOf(config);
    for (const url of urlForms(request.url)) {
      if (anyMatch('sha1', keys, [url, suffix], [given])) return OK;
    }
    return MISMATCH;
  },
};
