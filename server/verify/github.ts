/**
 * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
 * https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
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
import { decodeHex } from './decode.ts';
import type { Verifier } from './verifier.ts';

export type GithubConfig = Secrets & {
  provider: 'github';
};

const PREFIX = 'sha256=';

export const github: Verifier<GithubConfig> = {
  provider: 'github',
  methods: POST_ONLY,
  parse: (raw, fail) => parseSecrets('github', raw, fail),
  verify(config, request) {
    const header = headerValue(request.headers, 'x-hub-signature-256');
    if (header === undefined) return MISSING;
    // Buffer.from(…, 'hex') stops silently at a bad character: decodeHex checks the shape.
    const given = header.startsWith(PREFIX)
      ? decodeHex(header.slice(PREFIX.length), 32)
      : undefined;
    if (!given) return MALFORMED;
    return anyMatch('sha256', secretsOf(config), [request.body], [given]) ? OK : MISMATCH;
  },
  // GitHub signs the body alone: method, path and X-GitHub-Delivery are not covered.
  replayKey: bodyReplayKey('github'),
};
