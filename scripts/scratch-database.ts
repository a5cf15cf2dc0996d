/**
 * Throwaway PostgreSQL databases on a server the caller names (the bench's --database-url,
 * the tests' POSTERN_TEST_DATABASE_URL): each use creates its own database under a random name
 * and drops it after, so runs never see each other's state.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The local server the development and CI machines run (user postgres, trust auth). */
export const LOCAL_SERVER_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** The URL of database `name` on the server of `serverUrl` (same user, host and options). */
export function databaseUrl(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A random database name: `<prefix>_<hex>`. */
export function randomDatabaseName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Runs `fn` on one connection to the server's own database (`serverUrl` as given). */
export async function onServer<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database; returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  await onServer(serverUrl, (c) => c.query(`CREATE DATABASE "${name}"`));
  return databaseUrl(serverUrl, name);
}

/** Drops a database, ending the connections still open to it. */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}
