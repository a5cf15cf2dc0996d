/**
 * The connection pool: bounded, TLS as the URL's `sslmode` says (node-postgres reads it from
 * the connection string), and errors that never carry the password.
 */
import pg from 'pg';
import { PosternError } from '../../../shared/errors.ts';
import { redactSecrets } from './url.ts';

export interface PoolOptions {
  /** `postgres://user:password@host:port/db?sslmode=…` */
  url: string;
  /** Connections at most (default 10). */
  max?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  /** Told about errors of idle connections (the pool replaces them by itself). */
  onError?: (err: Error) => void;
}

export const DEFAULT_POOL_SIZE = 10;

/** Longest wait for a connection before an operation fails (the database is away). */
const CONNECT_TIMEOUT_MS = 10_000;

/** Connection settings shared by the pool and the feed's dedicated connection. */
export function clientConfig(opts: PoolOptions): pg.ClientConfig {
  return {
    connectionString: opts.url,
    application_name: opts.applicationName ?? 'postern',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
  };
}

export function createPool(opts: PoolOptions): pg.Pool {
  const max = opts.max ?? DEFAULT_POOL_SIZE;
  if (!Number.isInteger(max) || max < 1) {
    throw new PosternError('ERR_CONFIG', `pool size: expected an integer above 0, got ${max}`);
  }
  const pool = new pg.Pool({
    ...clientConfig(opts),
    max,
    idleTimeoutMillis: 30_000,
    // Durable before 202 whatever the server's default: each commit waits for its WAL flush.
    // Awaited before the connection is handed out (a failure ends it and fails the caller), so
    // no statement runs without it.
    onConnect: (client) => client.query('SET synchronous_commit = on'),
  });
  // An idle connection that dies (database restarted) must not crash the process.
  pool.on('error', (err) => opts.onError?.(scrubError(err, opts.url)));
  return pool;
}

/**
 * The same error with the URL's secrets masked in its message (drivers may quote the
 * connection string); other errors are returned as they are.
 */
export function scrubError<E>(err: E, url: string): E {
  if (err instanceof Error) {
    const clean = redactSecrets(err.message, url);
    if (clean !== err.message) err.message = clean;
    if (err.stack) err.stack = redactSecrets(err.stack, url);
  }
  return err;
}
