-- What the relays of one database share besides events and control (rule 8 of the contract):
-- rate-limit buckets, the apps' answers to sync events, and which agents each relay holds.

-- Token buckets, one row per key, changed under the row's lock: every relay takes from the same
-- bucket. Rows idle long enough to be full again are deleted (postern_prune_rate).
CREATE TABLE postern_rate (
  key text PRIMARY KEY,
  tokens double precision NOT NULL,
  at bigint NOT NULL,
  full_at bigint NOT NULL
);
CREATE INDEX postern_rate_full ON postern_rate (full_at);

-- Takes one token; returns 0 when taken, else the ms until one is available.
CREATE FUNCTION postern_take_token(p_key text, p_rate double precision, p_burst double precision,
  p_now bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_tokens double precision;
  v_at bigint;
  v_wait bigint := 0;
BEGIN
  INSERT INTO postern_rate (key, tokens, at, full_at) VALUES (p_key, p_burst, p_now, p_now)
    ON CONFLICT (key) DO NOTHING;
  SELECT tokens, at INTO v_tokens, v_at FROM postern_rate WHERE key = p_key FOR UPDATE;
  v_tokens := least(p_burst, v_tokens + greatest(0, p_now - v_at) / 1000.0 * p_rate);
  v_at := greatest(v_at, p_now);
  IF v_tokens >= 1 THEN
    v_tokens := v_tokens - 1;
  ELSE
    v_wait := ceil((1 - v_tokens) / p_rate * 1000);
  END IF;
  UPDATE postern_rate SET tokens = v_tokens, at = v_at,
      full_at = v_at + ceil((p_burst - v_tokens) / p_rate * 1000)::bigint
    WHERE key = p_key;
  RETURN v_wait;
END $$;

-- The app's answer to a sync event, for the relay holding the provider's request; kept until
-- the provider's deadline (`until`), then deleted.
CREATE TABLE postern_responses (
  event_id text PRIMARY KEY,
  until bigint NOT NULL,
  status integer NOT NULL,
  headers jsonb NOT NULL,
  body bytea NOT NULL
);
CREATE INDEX postern_responses_until ON postern_responses (until);

-- Which agents each relay holds live tunnels for, valid until `until` unless said again.
CREATE TABLE postern_presence (
  owner text PRIMARY KEY,
  agents jsonb NOT NULL,
  until bigint NOT NULL
);
