-- set_utility_timezone (0020) deleted every stored hour and day of consumption, then called
-- refresh_consumption, which takes the refreshes' turn (the transaction lock of 0061, 'cons') only
-- then. Every other writer of consumption_hourly, consumption_daily and dma_consumption_hourly (a VEE
-- round's refresh, a person's correction, a job card: refresh_consumption, refresh_meter_consumption,
-- refresh_meter_consumption_windows) takes the turn before it touches a row. A refresh that took the
-- turn while the time zone command was deleting came to a row the command had deleted and waited for
-- it to commit, while the command waited for the turn the refresh held: a deadlock, and PostgreSQL
-- rolled one back (a person's correction failed with "deadlock detected", or the round's refresh, or
-- the time zone command). The command now takes the turn first, before it writes anything; the work
-- is unchanged (refresh_consumption takes the turn again: it is held already).
CREATE OR REPLACE FUNCTION set_utility_timezone(p_zone text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first_ts timestamptz;
    last_ts  timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(p_zone)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use an IANA name such as Europe/London';
    END IF;
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons', as refresh_consumption: before any row is written
    UPDATE utility_settings SET value = p_zone, changed_at = now() WHERE name = 'timezone';
    SELECT min(ts), max(ts) INTO first_ts, last_ts FROM readings;
    IF first_ts IS NULL THEN
        RETURN 0;
    END IF;
    -- Rows laid out in the old zone's hours would not be replaced by the new zone's: start afresh.
    DELETE FROM consumption_hourly;
    DELETE FROM consumption_daily;
    DELETE FROM dma_consumption_hourly;
    RETURN refresh_consumption(first_ts, last_ts + interval '1 microsecond');
END
$$;
COMMENT ON FUNCTION set_utility_timezone(text) IS
    'the utility''s IANA time zone set, every stored hour and day of consumption recomputed in it; waits for the refreshes under way, as one of them';
