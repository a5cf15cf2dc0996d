/**
 * The bench's PostgreSQL databases: a fresh one for every relay it starts on PostgreSQL,
 * dropped once that relay has stopped (and, whatever happens, at the end of the run); and the
 * server's own counters of what a relay sent to its database.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createDatabase,
  databaseUrl,
  dropDatabase,
  onServer,
  randomDatabaseName,
} from '../scratch-database.ts';

/** Transactions a database committed and rolled back (pg_stat_database). */
export type DatabaseCounters = { commits: number; rollbacks: number };

/**
 * A backend reports its counters at most once a second, and an idle one within a second of
 * going idle (PostgreSQL's PGSTAT_MIN_INTERVAL): wait this long before reading them.
 */
const STATS_SETTLE_MS = 1_500;

export class BenchDatabases {
  /** The server: a URL to any database on it (its own database is used for admin work). */
  readonly serverUrl: string;
  readonly #live = new Set<string>();

  constructor(serverUrl: string) {
    this.serverUrl = serverUrl;
  }

  /** Creates an empty database; returns its name and URL. */
  async create(): Promise<{ name: string; url: string }> {
    const name = randomDatabaseName('postern_bench');
    const url = await createDatabase(this.serverUrl, name);
    this.#live.add(name);
    return { name, url };
  }

  urlOf(name: string): string {
    return databaseUrl(this.serverUrl, name);
  }

  async drop(name: string): Promise<void> {
    await dropDatabase(this.serverUrl, name);
    this.#live.delete(name);
  }

  /** Drops every database still there (the end of a run, an error, the overall timeout). */
  async dropAll(): Promise<void> {
    for (const name of [...this.#live]) await this.drop(name);
  }

  /** Commits and rollbacks of database `name` so far, once the relay's last ones are reported. */
  async counters(name: string): Promise<DatabaseCounters> {
    await sleep(STATS_SETTLE_MS);
    return onServer(this.serverUrl, async (c) => {
      const { rows } = await c.query<{ commits: string; rollbacks: string }>(
        `SELECT xact_commit AS commits, xact_rollback AS rollbacks
           FROM pg_stat_database WHERE datname = $1`,
        [name],
      );
      const row = rows[0];
      if (!row) throw new Error(`pg_stat_database has no row for ${name}`);
      return { commits: Number(row.commits), rollbacks: Number(row.rollbacks) };
    });
  }
}
