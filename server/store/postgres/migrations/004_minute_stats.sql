-- Per-minute delivery statistics kept as events go through (server/store/minute-stats.ts):
-- received, delivered and failed counts, and the delivery latency of first deliveries in a
-- fixed histogram of log-spaced buckets. Delta rows, as postern_counts: each append and settle
-- inserts its own (inserts never wait on each other, unlike one row per minute), the reader
-- sums them, and retention folds them (one row per minute and bucket) and drops old minutes.
-- A row with a bucket counts first deliveries of that latency bucket (in `delivered`); rows
-- without one count the rest.
CREATE TABLE postern_minutes (
  minute bigint NOT NULL,
  bucket smallint,
  received integer NOT NULL DEFAULT 0,
  delivered integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0
);
CREATE INDEX postern_minutes_minute ON postern_minutes (minute);

-- The latency bucket of `ms`: how many lower edges are at or below it. The same edges as
-- LATENCY_EDGES_MS in server/store/minute-stats.ts.
CREATE FUNCTION postern_latency_bucket(ms bigint) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
  SELECT width_bucket(ms, ARRAY[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
    20000, 60000, 120000, 300000, 600000, 1200000, 3600000]::bigint[])::smallint
$$;

-- 003's settle, which now also counts its deliveries and failures in their minute (the
-- `minuted` step, and `upd` returned by `changed` for it); the rest is unchanged.
--
-- Records outcomes of claimed events (settle). `p_items`: [{id, epoch, update}]; returns, in
-- the same order, each event's new summary or null when its claim no longer holds (a second
-- item for one event is refused: the first ended the claim).
CREATE OR REPLACE FUNCTION postern_settle(p_src text, p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_rows postern_events[];
  v_at bigint[];
  v_sums jsonb[];
  v_out jsonb;
  r record;
BEGIN
  -- The events first, in id order, as every writer locks them.
  PERFORM 1 FROM postern_events e
    JOIN postern_pending p ON p.event_id = e.id AND p.received_at = e.received_at
    WHERE p.event_id IN (SELECT x->>'id' FROM jsonb_array_elements(p_items) AS t(x))
    ORDER BY e.id
    FOR UPDATE OF e;

  -- Then the pending rows whose claim still holds; the events change, and their pending rows
  -- go back to the queue (a retry) or out of it (finished).
  WITH it AS (
    SELECT DISTINCT ON (t.x->>'id') t.x->>'id' AS id, (t.x->>'epoch')::bigint AS epoch,
           t.x->'update' AS upd, t.i
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(x, i)
      ORDER BY t.x->>'id', t.i
  ), held AS (
    SELECT p.event_id, p.received_at, it.upd, it.i
      FROM postern_pending p JOIN it ON p.event_id = it.id AND p.claim_epoch = it.epoch
      WHERE p.claim_owner IS NOT NULL
      ORDER BY p.event_id
      FOR UPDATE OF p
  ), changed AS (
    UPDATE postern_events e SET
      status = h.upd->>'status',
      attempt_count = (h.upd->>'attemptCount')::integer,
      next_attempt_at = (h.upd->>'nextAttemptAt')::bigint,
      replays = coalesce((h.upd->>'replays')::integer, e.replays),
      delivered_routes = CASE
        WHEN h.upd ? 'deliveredRoutes' THEN h.upd->'deliveredRoutes'
        WHEN h.upd ? 'replays' THEN '[]'::jsonb
        ELSE e.delivered_routes END,
      -- The last 20 attempts (the trimming function only where there may be more).
      attempts = CASE
        WHEN h.upd ? 'attempts' OR jsonb_array_length(e.attempts) >= 20 THEN
          postern_attempts_tail(
            (CASE WHEN h.upd ? 'attempts' THEN h.upd->'attempts' ELSE e.attempts END)
            || CASE WHEN h.upd ? 'attempt' THEN jsonb_build_array(h.upd->'attempt')
               ELSE '[]'::jsonb END)
        WHEN h.upd ? 'attempt' THEN e.attempts || jsonb_build_array(h.upd->'attempt')
        ELSE e.attempts END
      FROM held h
      WHERE e.id = h.event_id AND e.received_at = h.received_at
      RETURNING h.i, h.upd AS upd, e.*
  ), requeued AS (
    UPDATE postern_pending p SET claim_owner = NULL, lease_until = NULL,
        waiting = c.next_attempt_at > 0, ready_at = c.next_attempt_at
      FROM changed c
      WHERE p.event_id = c.id AND c.status = 'queued'
  ), finished AS (
    DELETE FROM postern_pending p USING changed c
      WHERE p.event_id = c.id AND c.status <> 'queued'
  ), counted AS (
    INSERT INTO postern_counts (status, n)
      SELECT c.status, count(*) FROM changed c GROUP BY c.status
      UNION ALL
      SELECT 'delivering', -count(*) FROM changed c HAVING count(*) > 0
  ), minuted AS (
    -- 004: deliveries and final failures in the minute their attempt ended.
    INSERT INTO postern_minutes (minute, bucket, delivered, failed)
      SELECT m.end_at - m.end_at % 60000,
             CASE WHEN m.status = 'delivered' AND m.replays = 0
                  THEN postern_latency_bucket(greatest(0, m.end_at - m.received_at)) END,
             count(*) FILTER (WHERE m.status = 'delivered'),
             count(*) FILTER (WHERE m.status = 'failed')
        FROM (SELECT c.status, c.replays, c.received_at,
                     coalesce(floor((c.upd->'attempt'->>'at')::numeric
                                    + (c.upd->'attempt'->>'durationMs')::numeric)::bigint,
                              (extract(epoch FROM clock_timestamp()) * 1000)::bigint) AS end_at
                FROM changed c WHERE c.status IN ('delivered', 'failed')) m
        GROUP BY 1, 2
  )
  SELECT array_agg(ROW(c.id, c.channel_id, c.received_at, c.status, c.method, c.path, c.query,
                       c.size, c.reason, c.order_key, c.attempt_count, c.next_attempt_at,
                       c.attempts, c.delivered_routes, c.replays)::postern_events ORDER BY c.i),
         array_agg(c.i ORDER BY c.i)
    INTO v_rows, v_at
    FROM changed c;

  FOR k IN 1 .. coalesce(array_length(v_rows, 1), 0) LOOP
    v_sums[k] := postern_summary(v_rows[k], false);
  END LOOP;
  PERFORM postern_notify_events(p_src, coalesce(to_jsonb(v_sums), '[]'::jsonb));
  -- Back in the queue, or its key freed: once per channel.
  FOR r IN SELECT DISTINCT u.channel_id FROM unnest(v_rows) AS u LOOP
    PERFORM postern_notify_work(p_src, r.channel_id);
  END LOOP;

  SELECT jsonb_agg(m.s ORDER BY t.i) INTO v_out
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(x, i)
    LEFT JOIN (SELECT v_at[k] AS i, v_sums[k] AS s
                 FROM generate_subscripts(v_at, 1) AS g(k)) m ON m.i = t.i;
  RETURN coalesce(v_out, '[]'::jsonb);
END $$;
