/**
 * Any other provider that signs the raw body with a shared secret: HMAC (sha1, sha256 or
 * sha512) of the body, hex or base64, in a header of the channel's choosing, after an
 * optional fixed prefix such as `sha256=`.
 */
import { readEnum, readOptionalString, readString } from '../../shared/fields.ts';
import { headerValue } from '../../shared/http.ts';
import type { HmacAlgorithm } from '../../shared/signing.ts';
import {
  anyMatch,
  bodyReplayKey,
  MALFORMED,
  MISMATCH,
  MISSING,
  OK,
  onlyFields,
  POST_ONLY,
  readSecrets,
  secretsOf,
  type Secrets,
} from './common.ts';
import { decodeBase64, decodeHex } from './decode.ts';
import type { Verifier } from './verifier.ts';

export type HmacEncoding = 'hex' | 'base64';

export type HmacConfig = Secrets & {
  provider: 'hmac';
  /** The request header that carries the signature (any case). */
  header: string;
  algorithm: HmacAlgorithm;
  encoding: HmacEncoding;
  /** Text before the encoded digest, such as `sha256=`; matched exactly. */
  prefix?: string;
};

const FIELDS = [
  'provider',
  'secret',
  'previousSecret',
  'header',
  'algorithm',
  'encoding',
  'prefix',
];
const ALGORITHMS: readonly HmacAlgorithm[] = ['sha1', 'sha256', 'sha512'];
const ENCODINGS: readonly HmacEncoding[] = ['hex', 'base64'];
const DIGEST_BYTES: Record<HmacAlgorithm, number> = { sha1: 20, sha256: 32, sha512: 64 };
/** An HTTP field name (RFC 9110 §5.1, a token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Printable ASCII; no leading space, which HTTP parsers strip from a value. */
const PREFIX = /^[\x21-\x7e][\x20-\x7e]{0,63}$/;

export const genericHmac: Verifier<HmacConfig> = {
  provider: 'hmac',
  methods: POST_ONLY,
  parse(raw, fail) {
    onlyFields(raw, FIELDS, fail);
    const secrets = readSecrets(raw, fail);
    const header = readString(raw, 'header', fail, { min: 1, max: 128 });
    if (!HEADER_NAME.test(header)) fail('header', 'an HTTP header name such as "X-Signature"');
    const config: HmacConfig = {
      provider: 'hmac',
      ...secrets,
      header,
      algorithm: readEnum(raw, 'algorithm', ALGORITHMS, fail),
      encoding: readEnum(raw, 'encoding', ENCODINGS, fail),
    };
    const prefix = readOptionalString(raw, 'prefix', fail, { min: 1, max: 64 });
    if (prefix !== undefined) {
      if (!PREFIX.test(prefix)) fail('prefix', 'printable ASCII text such as "sha256="');
      config.prefix = prefix;
    }
    return config;
  },
  verify(config, request) {
    const value = headerValue(request.headers, config.header);
    if (value === undefined) return MISSING;
    const prefix = config.prefix ?? '';
    if (!value.startsWith(prefix)) return MALFORMED;
    const encoded = value.slice(prefix.length);
    const bytes = DIGEST_BYTES[config.algorithm];
    const given =
      config.encoding === 'hex' ? decodeHex(encoded, bytes) : decodeBase64(encoded, bytes);
    if (!given) return MALFORMED;
    return anyMatch(config.algorithm, secretsOf(config), [request.body], [given]) ? OK : MISMATCH;
  },
  replayKey: bodyReplayKey('hmac'),
};
