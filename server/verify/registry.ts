/** The providers the relay can verify, by name. */
import { isObject, readString, type Fail } from '../../shared/fields.ts';
import type { VerifyConfig } from '../store/types.ts';
import { github } from './github.ts';
import { genericHmac } from './hmac.ts';
import { meta } from './meta.ts';
import { shopify } from './shopify.ts';
import { slack } from './slack.ts';
import { standardWebhooks } from './standard-webhooks.ts';
import { stripe } from './stripe.ts';
import { twilio } from './twilio.ts';
import { POST_ONLY } from './common.ts';
import type {
  HandshakeAnswer,
  ReplayKey,
  SignedRequest,
  Verifier,
  VerifyResult,
} from './verifier.ts';

export const verifiers: ReadonlyMap<string, Verifier<never>> = new Map(
  [github, stripe, slack, shopify, twilio, meta, standardWebhooks, genericHmac].map((v) => [
    v.provider,
    v as unknown as Verifier<never>,
  ]),
);

function lookup(provider: string): Verifier<VerifyConfig & { provider: string }> | undefined {
  return verifiers.get(provider) as Verifier<VerifyConfig & { provider: string }> | undefined;
}

/** Validates a channel's `verify` option (null or absent means no verification). */
export function parseVerifyConfig(raw: unknown, fail: Fail): VerifyConfig | null {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) return fail('verify', 'an object {provider, secret, …} or null');
  const provider = readString(raw, 'provider', (f, e) => fail(`verify.${f}`, e), {
    min: 1,
    max: 64,
  });
  const verifier = lookup(provider);
  if (!verifier) {
    return fail('verify.provider', `one of ${[...verifiers.keys()].join(', ')}`);
  }
  return verifier.parse(raw, (field, expected) => fail(`verify.${field}`, expected));
}

/**
 * The fields of a channel's `verify` object that hold secrets, whatever the provider: API
 * answers never show them, and the store encrypts them at rest. A provider that takes a new
 * secret field adds its name here, and nowhere else.
 */
export const VERIFY_SECRET_FIELDS: readonly string[] = ['secret', 'previousSecret', 'verifyToken'];

/** What API answers show of a `verify` config: every field but the secrets, and `rotating`. */
export function describeVerifyConfig(config: VerifyConfig | null): Record<string, unknown> | null {
  if (!config) return null;
  const view: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (!VERIFY_SECRET_FIELDS.includes(key)) view[key] = value;
  }
  view['rotating'] = config['previousSecret'] !== undefined;
  return view;
}

/** The answer to a provider's endpoint check, or null when the request is none. */
export function handshakeAnswer(
  config: VerifyConfig,
  request: SignedRequest,
): HandshakeAnswer | null {
  return lookup(config.provider)?.handshake?.(config, request) ?? null;
}

export function verifyRequest(config: VerifyConfig, request: SignedRequest): VerifyResult {
  const verifier = lookup(config.provider);
  if (!verifier) return { ok: false, reason: 'unknown_provider' };
  return verifier.verify(config, request);
}

/** The replay key of a request `verifyRequest` accepted (see `ReplayKey`). */
export function replayKeyOf(config: VerifyConfig, request: SignedRequest): ReplayKey | null {
  return lookup(config.provider)?.replayKey(config, request) ?? null;
}

/** The HTTP methods the channel's provider sends. */
export function providerMethods(config: VerifyConfig): readonly string[] {
  return lookup(config.provider)?.methods ?? POST_ONLY;
}
