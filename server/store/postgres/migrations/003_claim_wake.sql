-- A claim's wake-up time counts the leases of its own owner too. A claim whose answer was lost
-- on the way back (the connection reset after the commit) leaves rows claimed by a relay that
-- does not know it holds them; the relay renews only the claims it names, so those run out,
-- and the wake-up at their lease's end is what has them claimed again.

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
  r record;
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

  FOR r IN SELECT x FROM jsonb_array_elements(v_claims) AS t(x) LOOP
    PERFORM postern_notify_event(p_src, r.x->'event');
  END LOOP;

  -- Not claimable now but may become so by itself: a retry time, a lease (this owner's too).
  SELECT min(ready_at) INTO v_wake FROM postern_pending
    WHERE channel_id = p_channel AND waiting;
  RETURN jsonb_build_object('claims', v_claims, 'wakeAt', v_wake);
END $$;
