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

/**
 * Transactions a database committed and rolled back (pg_stat_database), and the calls of the
 * store's top-level functions (pg_stat_user_functions; null where the server does not count
 * them): the part of the statements that claims, settles, releases and updates account for.
 */
export type DatabaseCounters = {
  commits: number;
  rollbacks: number;
  calls: Record<StoreFunction, number> | null;
};

/** The functions the PostgreSQL store calls as statements of their own. */
export const STORE_FUNCTIONS = [
  'postern_claim',
  'postern_settle',
  'postern_release',
  'postern_update_event',
] as const;
export type StoreFunction = (typeof STORE_FUNCTIONS)[number];

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

  /** Creates an empty database that counts calls of PL/pgSQL functions; its name and URL. */
  async create(): Promise<{ name: string; url: string }> {
    const name = randomDatabaseName('postern_bench');
    const url = await createDatabase(this.serverUrl, name);
    this.#live.add(name);
    // Takes a superuser; without one, the counts of calls are simply missing.
    await onServer(this.serverUrl, (c) =>
      c.query(`ALTER DATABASE "${name}" SET track_functions = 'pl'`),
    ).catch(() => undefined);
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
    // Calls are only visible from the database itself; that read is one transaction of its
    // own there, so it comes before the transactions are read (and counts in no delta but 1).
    const calls = await onServer(this.urlOf(name), async (c) => {
      const { rows } = await c.query<{ funcname: string; calls: string }>(
        'SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname = ANY($1)',
        [[...STORE_FUNCTIONS]],
      );
      if (rows.length === 0) return null;
      const out = Object.fromEntries(STORE_FUNCTIONS.map((f) => [f, 0])) as Record<
        StoreFunction,
        number
      >;
      for (const r of rows) out[r.funcname as StoreFunction] = Number(r.calls);
      return out;
    }).catch(() => null);
    return onServer(this.serverUrl, async (c) => {
      const { rows } = await c.query<{ commits: string; rollbacks: string }>(
        `SELECT xact_commit AS commits, xact_rollback AS rollbacks
           FROM pg_stat_database WHERE datname = $1`,
        [name],
      );
      const row = rows[0];
      if (!row) throw new Error(`pg_stat_database has no row for ${name}`);
      return { commits: Number(row.commits), rollbacks: Number(row.rollbacks), calls };
    });
  }
}
