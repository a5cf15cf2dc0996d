-- Dispatch at the cost of a few statements per batch of events, not a few per event, and
-- nothing stuck by a lost answer:
-- * the change feed carries the ids of changed events, up to 200 per notification (a summary
--   per notification before), and each payload starts with the name of the store instance
--   that sent it, so that a relay skips its own without parsing them: `<src> {"t":"i","i":[…]}`;
--   a relay reads the events only while something of its own shows them live;
-- * a claim's wake-up time counts the leases of its own owner too: a claim whose answer was
--   lost on the way back (the connection reset after the commit) leaves rows claimed by a relay
--   that does not know it holds them; the relay renews only the claims it names, so those run
--   out, and the wake-up at their lease's end has them claimed again;
-- * outcomes are recorded set by set, one statement for every event of a settle batch (a
--   function call per event before, a quarter of a millisecond of the server's CPU each);
--   same arguments, same result, same locks in the same order: the events, then their pending
--   rows; each settle and append also counts its events in their minute (postern_minutes,
--   for the charts).

-- Changed events (their summaries, as the functions below have them): their ids, 200 per
-- notification (IDS_PER_NOTE in server/store/postgres/feed.ts).
CREATE FUNCTION postern_notify_events(p_src text, p_events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('postern_feed',
      p_src || ' ' || jsonb_build_object('t', 'i', 'i', jsonb_agg(x->'id' ORDER BY k))::text)
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS t(x, k)
   GROUP BY (k - 1) / 200;
END $$;

CREATE OR REPLACE FUNCTION postern_notify_event(p_src text, s jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM postern_notify_events(p_src, jsonb_build_array(s));
END $$;

CREATE OR REPLACE FUNCTION postern_notify_work(p_src text, p_channel text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('postern_feed', p_src || ' ' || jsonb_build_object('t', 'w', 'c', p_channel)::text);
END $$;

-- Claims (rules 3 to 5). Returns {claims: [{epoch, event}], wakeAt}.
CREATE OR REPLACE FUNCTION postern_claim(
  p_src text, p_owner text, p_channel text, p_ordered boolean, p_limit integer,
  p_now bigint, p_lease bigint
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_ids text[];
  v_fresh bigint;
  v_claims jsonb;
  v_wake bigint;
BEGIN
  -- Whatever's time came (a retry, a notBefore, a lease run out) is claimable again.
  UPDATE postern_pending SET waiting = false
    WHERE channel_id = p_channel AND waiting AND ready_at <= p_now;
  IF p_limit > 0 AND p_ordered THEN
    -- One ordered claimer per channel at a time, across relays: the head of each key and the
    -- absence of a live claim in it are decided together.
    PERFORM pg_advisory_xact_lock(hashtext('postern_ordered'), hashtext(p_channel));
    v_ids := ARRAY(
      WITH RECURSIVE k(order_key) AS (
        (SELECT order_key FROM postern_pending WHERE channel_id = p_channel
          ORDER BY order_key LIMIT 1)
        UNION ALL
        SELECT (SELECT q.order_key FROM postern_pending q
                 WHERE q.channel_id = p_channel AND q.order_key > k.order_key
                 ORDER BY q.order_key LIMIT 1)
          FROM k WHERE k.order_key IS NOT NULL
      )
      SELECT h.event_id FROM k CROSS JOIN LATERAL (
        SELECT q.event_id, q.waiting FROM postern_pending q
          WHERE q.channel_id = p_channel AND q.order_key = k.order_key
          ORDER BY q.event_id LIMIT 1
      ) h
      WHERE k.order_key IS NOT NULL AND NOT h.waiting
        AND NOT EXISTS (
          SELECT 1 FROM postern_pending c
            WHERE c.channel_id = p_channel AND c.order_key = k.order_key
              AND c.claim_owner IS NOT NULL AND c.lease_until > p_now)
      ORDER BY h.event_id LIMIT p_limit);
  ELSIF p_limit > 0 THEN
    v_ids := ARRAY(
      SELECT event_id FROM postern_pending
        WHERE channel_id = p_channel AND NOT waiting
        ORDER BY event_id LIMIT p_limit
        FOR UPDATE SKIP LOCKED);
  ELSE
    v_ids := ARRAY[]::text[];
  END IF;

  SELECT count(*) INTO v_fresh FROM postern_pending
    WHERE event_id = ANY(v_ids) AND claim_owner IS NULL;
  IF v_fresh > 0 THEN
    INSERT INTO postern_counts (status, n) VALUES ('queued', -v_fresh), ('delivering', v_fresh);
  END IF;

  WITH claimed AS (
    UPDATE postern_pending SET
      claim_owner = p_owner, claim_epoch = nextval('postern_claim_epoch'),
      lease_until = p_now + p_lease, ready_at = p_now + p_lease, waiting = true
    WHERE event_id = ANY(v_ids)
    RETURNING event_id, received_at, claim_epoch
  )
  SELECT coalesce(jsonb_agg(
      jsonb_build_object('epoch', c.claim_epoch, 'event', postern_summary(e, true))
      ORDER BY e.id), '[]'::jsonb)
    INTO v_claims
    FROM claimed c JOIN postern_events e ON e.id = c.event_id AND e.received_at = c.received_at;

  PERFORM postern_notify_events(p_src,
    (SELECT coalesce(jsonb_agg(x->'event'), '[]'::jsonb) FROM jsonb_array_elements(v_claims) x));

  -- Not claimable now but may become so by itself: a retry time, a lease (this owner's too).
  SELECT min(ready_at) INTO v_wake FROM postern_pending
    WHERE channel_id = p_channel AND waiting;
  RETURN jsonb_build_object('claims', v_claims, 'wakeAt', v_wake);
END $$;

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

-- A relay renews the claims it names, found by their key (003): the index by owner only cost
-- every claim and settle an entry more.
DROP INDEX IF EXISTS postern_pending_owner;
