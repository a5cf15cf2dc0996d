-- Postern's store on PostgreSQL, first schema. Times are milliseconds since the epoch (bigint),
-- as in server/store/types.ts. Several relays share these tables: every rule of the contract
-- that spans processes (claims, epochs, ordered keys, the change feed) is enforced here.

-- Events by day of arrival: retention drops whole partitions (postern_ensure_day creates them).
-- The delivery state only: `status` is the stored one; `delivering` is a claim in postern_pending.
CREATE TABLE postern_events (
  id text NOT NULL,
  channel_id text NOT NULL,
  received_at bigint NOT NULL,
  status text NOT NULL,
  method text NOT NULL,
  path text NOT NULL,
  query text NOT NULL,
  size bigint NOT NULL,
  reason text,
  order_key text NOT NULL,
  attempt_count integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL DEFAULT 0,
  attempts jsonb NOT NULL DEFAULT '[]',
  delivered_routes jsonb NOT NULL DEFAULT '[]',
  replays integer NOT NULL DEFAULT 0
) PARTITION BY RANGE (received_at);
CREATE INDEX postern_events_id ON postern_events (id);
CREATE INDEX postern_events_channel_status ON postern_events (channel_id, status, id);
CREATE INDEX postern_events_status ON postern_events (status, id);
CREATE INDEX postern_events_channel ON postern_events (channel_id, id);
CREATE INDEX postern_events_received ON postern_events (received_at);

-- What ingress captured (server/store/records.ts encoding), written once: updates of the state
-- never copy a body.
CREATE TABLE postern_payloads (
  id text NOT NULL,
  received_at bigint NOT NULL,
  record bytea NOT NULL
) PARTITION BY RANGE (received_at);
CREATE INDEX postern_payloads_id ON postern_payloads (id);

-- The queue: one narrow row per pending (queued or claimed) event, deleted when it finishes, so
-- the hot indexes hold only live work. `waiting`: not claimable before `ready_at` (a retry time,
-- a notBefore, a lease end); a claim moves the rows whose time came back (see postern_claim).
CREATE TABLE postern_pending (
  event_id text PRIMARY KEY,
  channel_id text NOT NULL,
  order_key text NOT NULL,
  received_at bigint NOT NULL,
  waiting boolean NOT NULL DEFAULT false,
  ready_at bigint NOT NULL DEFAULT 0,
  claim_owner text,
  claim_epoch bigint,
  lease_until bigint
) WITH (fillfactor = 70);
CREATE INDEX postern_pending_ready ON postern_pending (channel_id, event_id) WHERE NOT waiting;
CREATE INDEX postern_pending_waiting ON postern_pending (channel_id, ready_at) WHERE waiting;
CREATE INDEX postern_pending_keys ON postern_pending (channel_id, order_key, event_id);
CREATE INDEX postern_pending_claimed ON postern_pending (channel_id, order_key)
  WHERE claim_owner IS NOT NULL;
CREATE INDEX postern_pending_owner ON postern_pending (claim_owner) WHERE claim_owner IS NOT NULL;
CREATE INDEX postern_pending_received ON postern_pending (received_at);

-- Epochs of claims: one sequence, so a new claim's epoch is above every earlier claim's.
CREATE SEQUENCE postern_claim_epoch;

-- Replay protection: the latest event per (channel, key), pruned by age.
CREATE TABLE postern_dedup (
  channel_id text NOT NULL,
  dedup_key text NOT NULL,
  event_id text NOT NULL,
  received_at bigint NOT NULL,
  PRIMARY KEY (channel_id, dedup_key)
);
CREATE INDEX postern_dedup_received ON postern_dedup (received_at);

-- Events by status, exact: each transaction that moves events between statuses inserts its
-- deltas (inserts never wait on each other, unlike one counter row), and compaction folds them.
CREATE TABLE postern_counts (
  status text NOT NULL,
  n bigint NOT NULL
);

-- The control plane: one JSON document, changed under SELECT … FOR UPDATE.
CREATE TABLE postern_control (
  id smallint PRIMARY KEY CHECK (id = 1),
  doc jsonb NOT NULL,
  version bigint NOT NULL
);
INSERT INTO postern_control (id, doc, version) VALUES (
  1,
  '{"adminTokenHash": null, "channels": [], "agents": [], "pairings": [], "usedTokenIds": []}',
  0
);

-- Creates the partitions of the UTC day holding `p_at` (ms), if missing. Serialized so that two
-- relays creating the same day do not collide.
CREATE FUNCTION postern_ensure_day(p_at bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_start bigint := p_at - (((p_at % 86400000) + 86400000) % 86400000);
  v_suffix text := to_char(to_timestamp(v_start / 1000.0) AT TIME ZONE 'UTC', 'YYYYMMDD');
  v_table text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('postern_partitions'));
  FOREACH v_table IN ARRAY ARRAY['postern_events', 'postern_payloads'] LOOP
    IF to_regclass(v_table || '_' || v_suffix) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
        v_table || '_' || v_suffix, v_table, v_start, v_start + 86400000);
    END IF;
  END LOOP;
END $$;

-- An event's summary as the contract shows it (EventSummary).
CREATE FUNCTION postern_summary(e postern_events, claimed boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', e.id, 'channelId', e.channel_id,
    'status', CASE WHEN claimed AND e.status = 'queued' THEN 'delivering' ELSE e.status END,
    'receivedAt', e.received_at, 'method', e.method, 'path', e.path, 'query', e.query,
    'size', e.size, 'attemptCount', e.attempt_count, 'attempts', e.attempts,
    'nextAttemptAt', e.next_attempt_at, 'reason', e.reason, 'orderKey', e.order_key,
    'deliveredRoutes', e.delivered_routes, 'replays', e.replays)
$$;

-- The last 20 attempts (MAX_ATTEMPTS_KEPT in server/store/event-state.ts).
CREATE FUNCTION postern_attempts_tail(a jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_array_length(a) <= 20 THEN a ELSE (
    SELECT jsonb_agg(x ORDER BY i) FROM jsonb_array_elements(a) WITH ORDINALITY AS t(x, i)
    WHERE i > jsonb_array_length(a) - 20) END
$$;

-- Applies an EventUpdate (JSON) to a stored event: applyUpdate of server/store/event-state.ts.
-- (PL/pgSQL keeps its plan for the session; an SQL function would plan it on every call.)
CREATE FUNCTION postern_write_update(p_id text, p_received bigint, upd jsonb)
RETURNS postern_events LANGUAGE plpgsql AS $$
DECLARE
  e postern_events;
BEGIN
  UPDATE postern_events SET
    status = upd->>'status',
    attempt_count = (upd->>'attemptCount')::integer,
    next_attempt_at = (upd->>'nextAttemptAt')::bigint,
    replays = coalesce((upd->>'replays')::integer, replays),
    delivered_routes = CASE
      WHEN upd ? 'deliveredRoutes' THEN upd->'deliveredRoutes'
      WHEN upd ? 'replays' THEN '[]'::jsonb
      ELSE delivered_routes END,
    attempts = postern_attempts_tail(
      (CASE WHEN upd ? 'attempts' THEN upd->'attempts' ELSE attempts END)
      || CASE WHEN upd ? 'attempt' THEN jsonb_build_array(upd->'attempt') ELSE '[]'::jsonb END)
  WHERE id = p_id AND received_at = p_received
  RETURNING * INTO e;
  RETURN e;
END $$;

-- Adds a move of one event from status `p_from` to `p_to` to the deltas `d`.
CREATE FUNCTION postern_delta(d jsonb, p_from text, p_to text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_from IS NOT DISTINCT FROM p_to THEN d ELSE
    jsonb_set(
      CASE WHEN p_from IS NULL THEN d
        ELSE jsonb_set(d, ARRAY[p_from], to_jsonb(coalesce((d->>p_from)::bigint, 0) - 1)) END,
      ARRAY[p_to], to_jsonb(coalesce((d->>p_to)::bigint, 0) + 1)) END
$$;

CREATE FUNCTION postern_write_deltas(d jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO postern_counts (status, n)
  SELECT key, value::bigint FROM jsonb_each_text(d) WHERE value::bigint <> 0;
END $$;

-- The change feed (rule 6): NOTIFY is delivered after COMMIT, to every relay listening.
-- `s` names the store instance that made the change (it reports its own changes itself).
-- A summary too large for a notification is sent as its id (the listener reads it).
CREATE FUNCTION postern_notify_event(p_src text, s jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v text := jsonb_build_object('s', p_src, 't', 'e', 'e', s)::text;
BEGIN
  IF octet_length(v) > 7000 THEN
    v := jsonb_build_object('s', p_src, 't', 'i', 'i', s->>'id')::text;
  END IF;
  PERFORM pg_notify('postern_feed', v);
END $$;

CREATE FUNCTION postern_notify_work(p_src text, p_channel text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('postern_feed', jsonb_build_object('s', p_src, 't', 'w', 'c', p_channel)::text);
END $$;

-- Claims (rules 3 to 5). Returns {claims: [{epoch, event}], wakeAt}.
CREATE FUNCTION postern_claim(
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

  -- Not claimable now but may become so by itself: a retry time, another owner's lease.
  SELECT min(ready_at) INTO v_wake FROM postern_pending
    WHERE channel_id = p_channel AND waiting
      AND (claim_owner IS NULL OR claim_owner <> p_owner);
  RETURN jsonb_build_object('claims', v_claims, 'wakeAt', v_wake);
END $$;

-- Records outcomes of claimed events (settle). `p_items`: [{id, epoch, update}]; returns, in
-- the same order, each event's new summary or null when its claim no longer holds.
CREATE FUNCTION postern_settle(p_src text, p_items jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  it record;
  v_received bigint;
  e postern_events;
  p postern_pending;
  v_status text;
  v_out jsonb[] := ARRAY[]::jsonb[];
  v_d jsonb := '{}';
  v_s jsonb;
BEGIN
  FOR it IN SELECT x, i FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(x, i) ORDER BY i
  LOOP
    -- Locks in the order every writer takes them: the event, then its pending row.
    SELECT received_at INTO v_received FROM postern_pending WHERE event_id = it.x->>'id';
    IF FOUND THEN
      PERFORM 1 FROM postern_events
        WHERE id = it.x->>'id' AND received_at = v_received FOR UPDATE;
      SELECT * INTO p FROM postern_pending
        WHERE event_id = it.x->>'id' AND claim_epoch = (it.x->>'epoch')::bigint
          AND claim_owner IS NOT NULL
        FOR UPDATE;
    END IF;
    IF v_received IS NULL OR p.event_id IS NULL THEN
      v_out := v_out || NULL::jsonb;
      v_received := NULL;
      p := NULL;
      CONTINUE;
    END IF;
    e := postern_write_update(p.event_id, p.received_at, it.x->'update');
    v_status := e.status;
    IF v_status = 'queued' THEN
      UPDATE postern_pending SET claim_owner = NULL, lease_until = NULL,
          waiting = e.next_attempt_at > 0, ready_at = e.next_attempt_at
        WHERE event_id = p.event_id;
    ELSE
      DELETE FROM postern_pending WHERE event_id = p.event_id;
    END IF;
    v_d := postern_delta(v_d, 'delivering', v_status);
    v_s := postern_summary(e, false);
    PERFORM postern_notify_event(p_src, v_s);
    -- Back in the queue, or its key freed.
    PERFORM postern_notify_work(p_src, e.channel_id);
    v_out := v_out || v_s;
    v_received := NULL;
    p := NULL;
  END LOOP;
  PERFORM postern_write_deltas(v_d);
  RETURN to_jsonb(v_out);
END $$;

-- Ends a claim without an attempt. Returns the summary, or null when the claim no longer holds.
CREATE FUNCTION postern_release(p_src text, p_id text, p_epoch bigint, p_not_before bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_received bigint;
  e postern_events;
  v_s jsonb;
BEGIN
  SELECT received_at INTO v_received FROM postern_pending WHERE event_id = p_id;
  IF NOT FOUND THEN RETURN NULL; END IF;
  SELECT * INTO e FROM postern_events WHERE id = p_id AND received_at = v_received FOR UPDATE;
  UPDATE postern_pending SET claim_owner = NULL, lease_until = NULL,
      waiting = coalesce(p_not_before, 0) > 0, ready_at = coalesce(p_not_before, 0)
    WHERE event_id = p_id AND claim_epoch = p_epoch AND claim_owner IS NOT NULL;
  IF NOT FOUND THEN RETURN NULL; END IF;
  IF p_not_before IS NOT NULL THEN
    UPDATE postern_events SET next_attempt_at = p_not_before
      WHERE id = p_id AND received_at = v_received RETURNING * INTO e;
  END IF;
  INSERT INTO postern_counts (status, n) VALUES ('delivering', -1), ('queued', 1);
  v_s := postern_summary(e, false);
  PERFORM postern_notify_event(p_src, v_s);
  PERFORM postern_notify_work(p_src, e.channel_id);
  RETURN v_s;
END $$;

-- Changes an event outside of a claim (replay, skip). Returns {missing}, {conflict: status}
-- or {event: summary, work: whether its channel's queue changed}.
CREATE FUNCTION postern_update_event(p_src text, p_id text, upd jsonb, p_expect text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  e postern_events;
  p postern_pending;
  v_had boolean;
  v_claimed boolean;
  v_claimed_after boolean := false;
  v_from text;
  v_to text;
BEGIN
  SELECT * INTO e FROM postern_events WHERE id = p_id LIMIT 1 FOR UPDATE;
  IF NOT FOUND THEN RETURN jsonb_build_object('missing', true); END IF;
  SELECT * INTO p FROM postern_pending WHERE event_id = p_id FOR UPDATE;
  v_had := FOUND;
  v_claimed := v_had AND p.claim_owner IS NOT NULL;
  v_from := CASE WHEN v_claimed AND e.status = 'queued' THEN 'delivering' ELSE e.status END;
  IF p_expect IS NOT NULL AND NOT (v_from = ANY(p_expect)) THEN
    RETURN jsonb_build_object('conflict', v_from);
  END IF;
  e := postern_write_update(e.id, e.received_at, upd);
  IF e.status = 'queued' THEN
    IF NOT v_had THEN
      INSERT INTO postern_pending (event_id, channel_id, order_key, received_at, waiting, ready_at)
        VALUES (e.id, e.channel_id, e.order_key, e.received_at,
                e.next_attempt_at > 0, e.next_attempt_at);
    ELSIF v_claimed AND NOT (upd ? 'replays') THEN
      v_claimed_after := true;
    ELSE
      -- A replay ends the claim: the old owner's settle is refused (its owner is gone).
      UPDATE postern_pending SET claim_owner = NULL, lease_until = NULL,
          waiting = e.next_attempt_at > 0, ready_at = e.next_attempt_at
        WHERE event_id = p_id;
    END IF;
  ELSIF v_had THEN
    DELETE FROM postern_pending WHERE event_id = p_id;
  END IF;
  v_to := CASE WHEN v_claimed_after THEN 'delivering' ELSE e.status END;
  PERFORM postern_write_deltas(postern_delta('{}', v_from, v_to));
  PERFORM postern_notify_event(p_src, postern_summary(e, v_claimed_after));
  IF e.status = 'queued' OR v_had THEN
    PERFORM postern_notify_work(p_src, e.channel_id);
  END IF;
  RETURN jsonb_build_object('event', postern_summary(e, v_claimed_after),
    'work', e.status = 'queued' OR v_had);
END $$;
