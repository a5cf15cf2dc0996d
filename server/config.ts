/**
 * The relay's configuration, parsed once from flags and environment into a frozen object.
 * Flags override environment variables; secrets are never printed.
 */
import path from 'node:path';
import { ConfigError } from '../shared/errors.ts';
import { parseSecretsKey } from './secrets-box.ts';
import { DEFAULT_POOL_SIZE } from './store/postgres/pool.ts';
import type { SecretsKeySource } from './store/secrets-key.ts';

export interface RelayConfig {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /**
   * The PostgreSQL store's `postgres://…` URL (a secret: show it only through `redactUrl`);
   * null: the embedded store under `dataDir`.
   */
  readonly databaseUrl: string | null;
  /** PostgreSQL connections the relay's pool holds at most (the change feed holds one more). */
  readonly databasePoolSize: number;
  /** The URL providers and agents use; null means http://localhost:<the port listened on>. */
  readonly publicUrl: string | null;
  /** From POSTERN_ADMIN_TOKEN; when absent one is generated on first start. */
  readonly adminToken: string | null;
  /** The key that encrypts channel secrets at rest; never in the same file as they are. */
  readonly secretsKey: SecretsKeySource;
  /** Start although the secrets key cannot open the channel secrets (the key is lost). */
  readonly forgetLostSecrets: boolean;
  readonly logLevel: string;
  /** Interval of tunnel heartbeats; a peer silent for 3 intervals is dropped. */
  readonly heartbeatMs: number;
  /**
   * How long a claim on an event holds without renewal (renewed every third of it): with
   * several relays, how soon another delivers what a relay that died or stalled had claimed.
   */
  readonly leaseMs: number;
  /** Unacknowledged deliveries allowed per tunnel session. */
  readonly window: number;
  /** A delivery unacknowledged this long marks the session as stalled and replaces it. */
  readonly ackTimeoutMs: number;
  /** How long a pairing code stays valid. */
  readonly pairingTtlMs: number;
  /** Longest wait for in-flight work on SIGTERM. */
  readonly shutdownGraceMs: number;
  /** Delivered, failed and rejected events are removed this long after they were received. */
  readonly retentionMs: number;
  /** Behind a reverse proxy: rate limits key on the proxy's X-Forwarded-For entry. */
  readonly trustProxy: boolean;
  /** A connection must complete a request head this long after connecting (or starting one). */
  readonly headerTimeoutMs: number;
  /** Open connections per client address (behind a trusted proxy: requests in flight). */
  readonly maxConnectionsPerAddress: number;
}

export interface RelayConfigInput {
  host?: string | undefined;
  port?: string | undefined;
  dataDir?: string | undefined;
  databaseUrl?: string | undefined;
  databasePoolSize?: string | undefined;
  publicUrl?: string | undefined;
  logLevel?: string | undefined;
  heartbeatMs?: string | undefined;
  leaseMs?: string | undefined;
  retentionHours?: string | undefined;
  trustProxy?: boolean | undefined;
  secretsKeyFile?: string | undefined;
  forgetLostSecrets?: boolean | undefined;
  headerTimeoutMs?: string | undefined;
  maxConnectionsPerAddress?: string | undefined;
}

/** Defaults of the connection bounds (see server/http/connection-limits.ts). */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function intIn(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    throw new ConfigError(`${name}: expected an integer from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

/**
 * A `postgres://` or `postgresql://` URL. An error never repeats it (a mistyped URL may still
 * hold a password in a place no redaction recognizes): it names only the scheme found.
 */
export function parseDatabaseUrl(name: string, raw: string): string {
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    // described below without the value
  }
  if (!url || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') || !url.host) {
    const found = !url
      ? 'something that is not a URL'
      : /^[a-z][a-z0-9+.-]*:$/i.test(url.protocol) && url.host
        ? `a ${url.protocol}// URL`
        : 'a URL without a host';
    throw new ConfigError(
      `${name}: expected postgres://user:password@host:port/database, got ${found}`,
    );
  }
  return raw;
}

/** Builds the config from flags (first) and environment (second). */
export function parseRelayConfig(
  flags: RelayConfigInput,
  env: NodeJS.ProcessEnv = {},
): RelayConfig {
  const host = flags.host ?? env['POSTERN_HOST'] ?? '0.0.0.0';
  const port = intIn(
    '--port / POSTERN_PORT',
    flags.port ?? env['POSTERN_PORT'] ?? '8080',
    0,
    65_535,
  );
  const dataDir = path.resolve(flags.dataDir ?? env['POSTERN_DATA_DIR'] ?? './data');
  const rawDatabase = flags.databaseUrl ?? (env['POSTERN_DATABASE_URL'] || undefined);
  const databaseUrl =
    rawDatabase === undefined
      ? null
      : parseDatabaseUrl('--database-url / POSTERN_DATABASE_URL', rawDatabase);
  const databasePoolSize = intIn(
    '--database-pool-size / POSTERN_DATABASE_POOL_SIZE',
    flags.databasePoolSize ?? env['POSTERN_DATABASE_POOL_SIZE'] ?? String(DEFAULT_POOL_SIZE),
    1,
    1_000,
  );
  const rawPublic = flags.publicUrl ?? env['POSTERN_PUBLIC_URL'];
  let publicUrl: string | null = null;
  if (rawPublic !== undefined) {
    try {
      const url = new URL(rawPublic);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
      if (url.search || url.hash || url.pathname !== '/') throw new Error('path');
      publicUrl = url.href.replace(/\/$/, '');
    } catch {
      throw new ConfigError(
        `--public-url / POSTERN_PUBLIC_URL: expected an http(s) URL of a host root (no path or query), got "${rawPublic}"`,
      );
    }
  }
  const logLevel = flags.logLevel ?? env['POSTERN_LOG_LEVEL'] ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(
      `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`,
    );
  }
  const heartbeatMs = intIn(
    '--heartbeat-ms / POSTERN_HEARTBEAT_MS',
    flags.heartbeatMs ?? env['POSTERN_HEARTBEAT_MS'] ?? '10000',
    50,
    600_000,
  );
  const leaseMs = intIn(
    '--lease-ms / POSTERN_LEASE_MS',
    flags.leaseMs ?? env['POSTERN_LEASE_MS'] ?? '30000',
    1_000,
    600_000,
  );
  const rawRetention = flags.retentionHours ?? env['POSTERN_RETENTION_HOURS'] ?? '168';
  const retentionHours = Number(rawRetention);
  if (!/^\d+(\.\d+)?$/.test(rawRetention) || retentionHours <= 0 || retentionHours > 87_600) {
    throw new ConfigError(
      `--retention-hours / POSTERN_RETENTION_HOURS: expected a number of hours above 0 (decimals allowed, at most 87600), got "${rawRetention}"`,
    );
  }
  // At most 60 s: Node requires headersTimeout <= requestTimeout (120 s, server/relay.ts).
  const headerTimeoutMs = intIn(
    '--header-timeout-ms / POSTERN_HEADER_TIMEOUT_MS',
    flags.headerTimeoutMs ?? env['POSTERN_HEADER_TIMEOUT_MS'] ?? String(DEFAULT_HEADER_TIMEOUT_MS),
    1_000,
    60_000,
  );
  const maxConnectionsPerAddress = intIn(
    '--max-connections-per-address / POSTERN_MAX_CONNECTIONS_PER_ADDRESS',
    flags.maxConnectionsPerAddress ??
      env['POSTERN_MAX_CONNECTIONS_PER_ADDRESS'] ??
      String(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
    1,
    1_000_000,
  );
  const adminToken = env['POSTERN_ADMIN_TOKEN'] || null;
  if (adminToken !== null && adminToken.length < 16) {
    throw new ConfigError('POSTERN_ADMIN_TOKEN: expected at least 16 characters');
  }
  const keyFile = flags.secretsKeyFile ?? (env['POSTERN_SECRETS_KEY_FILE'] || undefined);
  const keyText = env['POSTERN_SECRETS_KEY'] || undefined;
  if (keyFile !== undefined && keyText !== undefined) {
    throw new ConfigError(
      'POSTERN_SECRETS_KEY and a key file (--secrets-key-file / POSTERN_SECRETS_KEY_FILE) are both set: keep one',
    );
  }
  const secretsKey: SecretsKeySource =
    keyText !== undefined
      ? { kind: 'env', key: parseSecretsKey(keyText, 'POSTERN_SECRETS_KEY') }
      : keyFile !== undefined
        ? { kind: 'file', file: path.resolve(keyFile) }
        : { kind: 'data-dir' };
  return Object.freeze({
    host,
    port,
    dataDir,
    databaseUrl,
    databasePoolSize,
    publicUrl,
    adminToken,
    secretsKey,
    forgetLostSecrets: flags.forgetLostSecrets ?? false,
    logLevel,
    heartbeatMs,
    leaseMs,
    window: 256,
    ackTimeoutMs: 330_000,
    pairingTtlMs: 15 * 60_000,
    shutdownGraceMs: 10_000,
    retentionMs: Math.round(retentionHours * 3_600_000),
    trustProxy: flags.trustProxy ?? ['1', 'true', 'yes'].includes(env['POSTERN_TRUST_PROXY'] ?? ''),
    headerTimeoutMs,
    maxConnectionsPerAddress,
  });
}
