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
  BODY_REPLAY_MS,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  queryOf,
  replayKeyOver,
  secretsOf,
  type Secrets,
  parseSecrets,
} from './common.ts';
import { decodeBase64, decodeHex } from './decode.ts';
import type { SignedRequest, Verifier, VerifyResult } from './verifier.ts';

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

/**
 * One form of the URL that every form `urlForms` tries leads back to (the parsed URL with its
 * port spelled out): two requests that verify with the same signature share it.
 */
function canonicalUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const defaultPort = parsed.protocol === 'https:' ? '443' : '80';
    return `${parsed.protocol}//${parsed.hostname}:${parsed.port || defaultPort}${parsed.pathname}${parsed.search}`;
  } catch {
    return url;
  }
}

function checkBodyHash(url: string, body: Buffer): VerifyResult {
  const given = decodeHex(queryOf(url).get('bodySHA256') ?? '', 32);
  const actual = createHash('sha256').update(body).digest();
  if (!given || !constantTimeEqual(actual, given)) {
    return { ok: false, reason: 'body_hash_mismatch' };
  }
  return OK;
}

/** What is signed after the URL (the sorted form parameters, or nothing), or a refusal. */
function signedSuffix(request: SignedRequest): string | VerifyResult {
  if (queryOf(request.url).has('bodySHA256')) {
    // A JSON body: the signed URL carries its hash, and the signature covers the URL alone.
    const hash = checkBodyHash(request.url, request.body);
    return hash.ok ? '' : hash;
  }
  if (request.method === 'POST' && isForm(headerValue(request.headers, 'content-type'))) {
    return formSuffix(request.body);
  }
  // Neither the parameters nor a hash would cover this body: anyone could change it.
  if (request.body.length > 0) return { ok: false, reason: 'missing_body_hash' };
  return '';
}

export const twilio: Verifier<TwilioConfig> = {
  provider: 'twilio',
  // Twilio calls a webhook with the method configured for it: POST by default, or GET.
  methods: ['POST', 'GET'],
  parse: (raw, fail) => parseSecrets('twilio', raw, fail),
  verify(config, request) {
    const header = headerValue(request.headers, 'x-twilio-signature');
    if (header === undefined) return MISSING;
    const given = decodeBase64(header, 20);
    if (!given) return MALFORMED;
    const suffix = signedSuffix(request);
    if (typeof suffix !== 'string') return suffix;
    const keys = secretsOf(config);
    for (const url of urlForms(request.url)) {
      if (anyMatch('sha1', keys, [url, suffix], [given])) return OK;
    }
    return MISMATCH;
  },
  replayKey(_config, request) {
    const suffix = signedSuffix(request);
    const covered = [canonicalUrl(request.url), typeof suffix === 'string' ? suffix : ''];
    // Not timestamped: a signed URL and its parameters verify for ever.
    return replayKeyOver('twilio', BODY_REPLAY_MS, covered);
  },
};
