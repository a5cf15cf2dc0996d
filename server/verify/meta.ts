/**
 * Meta (WhatsApp, Messenger, Instagram): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
 * raw body>` with the app secret; the subscription check
 * `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` is answered with the challenge
 * when the token is the channel's `verifyToken`.
 * https://developers.facebook.com/docs/graph-api/webhooks/getting-started
 */
import { readString } from '../../shared/fields.ts';
import { headerValue } from '../../shared/http.ts';
import {
  anyMatch,
  bodyReplayKey,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  onlyFields,
  queryOf,
  readSecrets,
  sameSecret,
  secretsOf,
  type Secrets,
} from './common.ts';
import { decodeHex } from './decode.ts';
import type { HandshakeAnswer, Verifier } from './verifier.ts';

export type MetaConfig = Secrets & {
  provider: 'meta';
  /** The token typed into the app dashboard, echoed back in `hub.verify_token`. */
  verifyToken: string;
};

const FIELDS = ['provider', 'secret', 'previousSecret', 'verifyToken'];
const PREFIX = 'sha256=';
const MAX_CHALLENGE = 1024;

function plain(status: number, body: string): HandshakeAnswer {
  return { status, contentType: 'text/plain', body };
}

export const meta: Verifier<MetaConfig> = {
  provider: 'meta',
  // GET: the subscription check (`hub.challenge`), answered by `handshake`.
  methods: ['POST', 'GET'],
  parse(raw, fail) {
    onlyFields(raw, FIELDS, fail);
    const secrets = readSecrets(raw, fail);
    const verifyToken = readString(raw, 'verifyToken', fail, { min: 1, max: 1024 });
    return { provider: 'meta', ...secrets, verifyToken };
  },
  verify(config, request) {
    const header = headerValue(request.headers, 'x-hub-signature-256');
    if (header === undefined) return MISSING;
    const given = header.startsWith(PREFIX)
      ? decodeHex(header.slice(PREFIX.length), 32)
      : undefined;
    if (!given) return MALFORMED;
    return anyMatch('sha256', secretsOf(config), [request.body], [given]) ? OK : MISMATCH;
  },
  replayKey: bodyReplayKey('meta'),
  handshake(config, request) {
    if (request.method !== 'GET') return null;
    const query = queryOf(request.url);
    if (query.get('hub.mode') !== 'subscribe') return null;
    // A subscription check is answered here whatever its token: it never reaches verify.
    const token = query.get('hub.verify_token');
    if (token === null || !sameSecret(token, config.verifyToken)) {
      return plain(403, 'hub.verify_token does not match');
    }
    const challenge = query.get('hub.challenge');
    if (challenge === null || challenge.length === 0 || challenge.length > MAX_CHALLENGE) {
      return plain(400, 'hub.challenge is missing or too long');
    }
    return plain(200, challenge);
  },
};
