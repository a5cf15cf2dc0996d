/**
 * Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>` with the app's
 * client secret.
 * https://shopify.dev/docs/apps/build/webhooks/subscribe/https
 */
import { headerValue } from '../../shared/http.ts';
import {
  anyMatch,
  bodyReplayKey,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  POST_ONLY,
  secretsOf,
  type Secrets,
  parseSecrets,
} from './common.ts';
import { decodeBase64 } from './decode.ts';
import type { Verifier } from './verifier.ts';

export type ShopifyConfig = Secrets & {
  provider: 'shopify';
};

export const shopify: Verifier<ShopifyConfig> = {
  provider: 'shopify',
  methods: POST_ONLY,
  parse: (raw, fail) => parseSecrets('shopify', raw, fail),
  verify(config, request) {
    const header = headerValue(request.headers, 'x-shopify-hmac-sha256');
    if (header === undefined) return MISSING;
    const given = decodeBase64(header, 32);
    if (!given) return MALFORMED;
    return anyMatch('sha256', secretsOf(config), [request.body], [given]) ? OK : MISMATCH;
  },
  replayKey: bodyReplayKey('shopify'),
};
