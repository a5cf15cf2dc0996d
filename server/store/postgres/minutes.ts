/**
 * The PostgreSQL store's per-minute statistics (migrations/003_dispatch_batches.sql): delta rows
 * written by appends and settles, summed when read, folded and pruned by retention.
 */
import type pg from 'pg';
import { addDelta, emptyMinute, minuteOf } from '../minute-stats.ts';
import type { MinuteStats } from '../types.ts';

/** The minutes in [since, until) that have something, oldest first. */
export async function readMinutes(
  pool: pg.Pool,
  range: { since: number; until: number },
): Promise<MinuteStats[]> {
  const { rows } = await pool.query<{
    minute: string;
    bucket: number | null;
    received: string;
    delivered: string;
    failed: string;
  }>(
    `SELECT minute, bucket, sum(received) AS received, sum(delivered) AS delivered,
            sum(failed) AS failed
       FROM postern_minutes WHERE minute >= $1 AND minute < $2
      GROUP BY minute, bucket ORDER BY minute`,
    [range.since, range.until],
  );
  const out: MinuteStats[] = [];
  for (const row of rows) {
    const minute = Number(row.minute);
    let m = out.at(-1);
    if (m?.minute !== minute) out.push((m = emptyMinute(minute)));
    const delivered = Number(row.delivered);
    addDelta(m, { minute, received: Number(row.received), delivered, failed: 0, bucket: null });
    m.failed += Number(row.failed);
    if (row.bucket !== null) m.latency[row.bucket] = (m.latency[row.bucket] ?? 0) + delivered;
  }
  return out.filter((m) => m.received + m.delivered + m.failed > 0);
}

/**
 * Retention: drops the minutes before the cutoff's, and folds the delta rows of each minute
 * and bucket into one (one relay at a time; another skips it).
 */
export async function foldMinutes(pool: pg.Pool, cutoff: number): Promise<void> {
  await pool.query('DELETE FROM postern_minutes WHERE minute < $1', [minuteOf(cutoff)]);
  await pool.query(
    `WITH l AS (SELECT pg_try_advisory_xact_lock(hashtext('postern_minutes')) AS ok),
          dup AS (SELECT minute, bucket FROM postern_minutes
                   WHERE (SELECT ok FROM l) GROUP BY minute, bucket HAVING count(*) > 1),
          gone AS (DELETE FROM postern_minutes m USING dup
                    WHERE m.minute = dup.minute AND m.bucket IS NOT DISTINCT FROM dup.bucket
                    RETURNING m.*)
     INSERT INTO postern_minutes (minute, bucket, received, delivered, failed)
     SELECT minute, bucket, sum(received), sum(delivered), sum(failed)
       FROM gone GROUP BY minute, bucket`,
  );
}
