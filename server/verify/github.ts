/**
 * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
 * https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
 */
import { readOptionalString, readString } from '../../shared/fields.ts';
import { headerValue } from '../../shared/http.ts';
import { constantTimeEqual, hmac } from '../../shared/signing.ts';
import type { Verifier } from './verifier.ts';

export interface GithubConfig {
  provider: 'github';
  secret: string;
  /** Accepted as well during a rotation. */
  previousSecret?: string;
}

const PREFIX = 'sha256=';

export const github: Verifier<GithubConfig> = {
  provider: 'github',
  parse(raw, fail) {
    const config: GithubConfig = {
      provider: 'github',
      secret: readString(raw, 'secret', fail, { min: 1, max: 1024 }),
    };
    const previous = readOptionalString(raw, 'previousSecret', fail, { min: 1, max: 1024 });
    if (previous !== undefined) config.previousSecret = previous;
    return config;
  },
  describe(config) {
    return { provider: 'github', rotating: config.previousSecret !== undefined };
  },
  verify(config, request) {
    const header = headerValue(request.headers, 'x-hub-signature-256');
    if (header === undefined) return { ok: false, reason: 'missing_signature' };
    const hex = header.startsWith(PREFIX) ? header.slice(PREFIX.length) : '';
    // Buffer.from(…, 'hex') stops silently at a bad character: check the shape first.
    if (!/^[0-9a-f]{64}$/i.test(hex)) return { ok: false, reason: 'malformed_signature' };
    const given = Buffer.from(hex, 'hex');
    for (const secret of [config.secret, config.previousSecret]) {
      if (secret === undefined) continue;
      if (constantTimeEqual(hmac('sha256', secret, request.body), given)) return { ok: true };
    }
    return { ok: false, reason: 'signature_mismatch' };
  },
};
