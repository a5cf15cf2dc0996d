/**
 * The one place where log redaction is configured, for both binaries. Code should never put a
 * secret in a log line in the first place; this is the net under that rule.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  'adminToken',
  'jwt',
  'pairingCode',
  'secret',
  'previousSecret',
  'verifyToken',
  'secretsKey',
  'signingSecret',
  'authorization',
  '*.token',
  '*.adminToken',
  '*.jwt',
  '*.pairingCode',
  '*.secret',
  '*.previousSecret',
  '*.verifyToken',
  '*.secretsKey',
  '*.signingSecret',
  '*.authorization',
  'headers.authorization',
  'headers["x-hub-signature-256"]',
  'headers["stripe-signature"]',
  'headers["x-slack-signature"]',
  'headers["x-shopify-hmac-sha256"]',
  'headers["x-twilio-signature"]',
  'headers["webhook-signature"]',
];

export function createLogger(name: string, level: string): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
