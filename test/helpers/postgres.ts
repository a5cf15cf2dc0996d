/**
 * PostgreSQL for tests: the server named by POSTERN_TEST_DATABASE_URL (default: the local one,
 * trust auth); each test file makes its own databases (random names) and drops them after.
 * The databases themselves are scripts/scratch-database.ts's, shared with the bench.
 */
import * as scratch from '../../scripts/scratch-database.ts';

export const TEST_DATABASE_URL =
  process.env['POSTERN_TEST_DATABASE_URL'] ?? scratch.LOCAL_SERVER_URL;

/** The URL of database `name` on the test server. */
export function databaseUrl(name: string): string {
  return scratch.databaseUrl(TEST_DATABASE_URL, name);
}

/** A random database name for this file: `<prefix>_<hex>`; add suffixes for several. */
export function randomDatabaseName(prefix = 'postern_test'): string {
  return scratch.randomDatabaseName(prefix);
}

/** Creates an empty database; returns its URL. */
export function createDatabase(name: string): Promise<string> {
  return scratch.createDatabase(TEST_DATABASE_URL, name);
}

/** Drops a database, ending the connections still open to it. */
export function dropDatabase(name: string): Promise<void> {
  return scratch.dropDatabase(TEST_DATABASE_URL, name);
}
