/**
 * Events and payloads are partitioned by UTC day of arrival. Days are created ahead of time
 * (and on demand for an arrival time outside them); retention drops a whole day once every
 * event of it is finished and older than the cutoff, and deletes rows only where a day is
 * partly kept (the day straddling the cutoff, or one still holding pending events).
 */
import type pg from 'pg';

export const DAY_MS = 86_400_000;

/** Finished statuses: what retention may remove. */
const FINISHED = ['delivered', 'failed', 'rejected', 'filtered'];

/** Rows deleted per retention statement. */
const DELETE_BATCH = 2_000;

/** Dedup keys are kept this long after the newest one (as the embedded store does). */
export const MAX_DEDUP_AGE_MS = 25 * 3_600_000;

export function dayStart(at: number): number {
  return at - (((at % DAY_MS) + DAY_MS) % DAY_MS);
}

function suffixOf(day: number): string {
  return new Date(day).toISOString().slice(0, 10).replaceAll('-', '');
}

/** The day a partition holds, from its name (`postern_events_YYYYMMDD`). */
function dayOf(name: string): number | undefined {
  const m = /_(\d{4})(\d{2})(\d{2})$/.exec(name);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : undefined;
}

/** Days whose partitions exist (cached: a day is created once and dropped only when old). */
export class Days {
  readonly #known = new Set<number>();

  /** Makes sure the partitions of every day of `times` exist. */
  async ensure(pool: pg.Pool, times: Iterable<number>): Promise<void> {
    const missing = new Set<number>();
    for (const t of times) {
      const day = dayStart(t);
      if (!this.#known.has(day)) missing.add(day);
    }
    for (const day of missing) {
      await pool.query('SELECT postern_ensure_day($1)', [day]);
      this.#known.add(day);
    }
  }

  forget(day?: number): void {
    if (day === undefined) this.#known.clear();
    else this.#known.delete(day);
  }
}

export interface Removed {
  /** Events removed, by status. */
  byStatus: Map<string, number>;
  /** Days whose partitions were dropped whole. */
  droppedDays: number[];
}

function add(into: Map<string, number>, status: string, n: number): void {
  into.set(status, (into.get(status) ?? 0) + n);
}

/**
 * Removes finished events received before `cutoff`: whole days where it can, rows elsewhere.
 * Pending events are never removed.
 */
export async function removeFinished(pool: pg.Pool, cutoff: number): Promise<Removed> {
  const removed: Removed = { byStatus: new Map(), droppedDays: [] };
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'postern_events'::regclass ORDER BY 1`,
  );
  for (const { name } of rows) {
    const day = dayOf(name);
    if (day === undefined || day + DAY_MS > cutoff) continue;
    const counts = await dropDay(pool, day);
    if (counts === null) continue;
    for (const [status, n] of counts) add(removed.byStatus, status, n);
    removed.droppedDays.push(day);
  }
  // What is left before the cutoff: the day straddling it, and days holding pending events.
  for (;;) {
    const { rows: gone } = await pool.query<{ status: string; n: string }>(
      `WITH doomed AS (
         DELETE FROM postern_events WHERE (id, received_at) IN (
           SELECT id, received_at FROM postern_events
            WHERE received_at < $1 AND status = ANY($2) LIMIT ${DELETE_BATCH})
         AND status = ANY($2)
         RETURNING id, received_at, status
       ), payloads AS (
         DELETE FROM postern_payloads p USING doomed d
          WHERE p.id = d.id AND p.received_at = d.received_at
       ), counted AS (
         INSERT INTO postern_counts (status, n)
         SELECT status, -count(*) FROM doomed GROUP BY status
       )
       SELECT status, count(*) AS n FROM doomed GROUP BY status`,
      [cutoff, FINISHED],
    );
    let n = 0;
    for (const row of gone) {
      add(removed.byStatus, row.status, Number(row.n));
      n += Number(row.n);
    }
    if (n < DELETE_BATCH) break;
  }
  return removed;
}

/**
 * Drops one day's partitions if none of its events is pending; returns its events by status,
 * or null when it is kept. The parents are locked first, in the order every query takes them,
 * so that nothing waits in a cycle; a busy database makes it give up until the next sweep.
 */
async function dropDay(pool: pg.Pool, day: number): Promise<Map<string, number> | null> {
  const events = `postern_events_${suffixOf(day)}`;
  const payloads = `postern_payloads_${suffixOf(day)}`;
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL lock_timeout = '2s'`);
      await client.query('LOCK TABLE postern_events, postern_payloads IN ACCESS EXCLUSIVE MODE');
      const pending = await client.query(
        'SELECT 1 FROM postern_pending WHERE received_at >= $1 AND received_at < $2 LIMIT 1',
        [day, day + DAY_MS],
      );
      if (pending.rowCount !== 0) {
        await client.query('ROLLBACK');
        return null;
      }
      const { rows } = await client.query<{ status: string; n: string }>(
        `SELECT status, count(*) AS n FROM ${events} GROUP BY status`,
      );
      const counts = new Map(rows.map((r) => [r.status, Number(r.n)]));
      await client.query(`DROP TABLE ${events}`);
      await client.query(`DROP TABLE IF EXISTS ${payloads}`);
      if (counts.size > 0) {
        await client.query(
          'INSERT INTO postern_counts (status, n) SELECT * FROM unnest($1::text[], $2::bigint[])',
          [[...counts.keys()], [...counts.values()].map((n) => -n)],
        );
      }
      await client.query('COMMIT');
      return counts;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      // Lock not granted in time: the next sweep tries again.
      if ((err as { code?: unknown }).code === '55P03') return null;
      throw err;
    }
  } catch (err) {
    broken = true;
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Forgets dedup keys older than any replay window asks about. */
export async function pruneDedup(pool: pg.Pool): Promise<void> {
  for (;;) {
    const r = await pool.query(
      `DELETE FROM postern_dedup WHERE (channel_id, dedup_key) IN (
         SELECT channel_id, dedup_key FROM postern_dedup
          WHERE received_at < (SELECT max(received_at) FROM postern_dedup) - $1
          LIMIT ${DELETE_BATCH})`,
      [MAX_DEDUP_AGE_MS],
    );
    if ((r.rowCount ?? 0) < DELETE_BATCH) return;
  }
}
