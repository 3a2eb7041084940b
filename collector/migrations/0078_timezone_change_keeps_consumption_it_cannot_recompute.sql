-- set_utility_timezone (0020, 0077) deletes every stored hour and day of consumption and computes them
-- again from the readings, in the new zone. Readings may be gone while their consumption stays: old
-- chunks dropped by hand (drop_chunks, after a copy: the README's storage section), a meter's reads
-- deleted. The command then deleted the consumption those readings had given and put nothing back:
-- a database read in Asia/Kolkata from the start kept 6.530 m³ where one moved to Kolkata from UTC
-- after its first day's reads were dropped kept 3.786 m³ (61 hourly rows gone), and NEM12,
-- a meter's page and the DMA balances of those days with it, silently. With no readings left at all
-- the zone changed and the stored rows stayed laid out in the old zone's hours.
--
-- Now the command refuses, before it writes anything, when a stored hour of consumption counts an
-- interval whose reads are gone: an hour of a meter with no readings, or one beginning before the
-- meter's first reading that counts more intervals than the meter's reads after that first one and up
-- to the hour's end can close (an interval is counted in the hour of its closing read, and only
-- after a read before it: the interval closing at the first reading left is lost too). The error
-- names the meter and the hour and says what to do: restore the readings, or give that consumption up
-- by deleting each meter's hours before its first reading first (the change computes the days and
-- the DMA hours again from the hours). The zone, the stored consumption and the readings are left as
-- they were.
-- The turn is still taken first (0077): the check reads the consumption tables, as a refresh does.
CREATE OR REPLACE FUNCTION set_utility_timezone(p_zone text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first_ts   timestamptz;
    last_ts    timestamptz;
    lost_meter text;
    lost_hour  timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(p_zone)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use an IANA name such as Europe/London';
    END IF;
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons', as refresh_consumption: before any row is written
    SELECT min(ts), max(ts) INTO first_ts, last_ts FROM readings;
    -- each meter's first reading looked up once, then its hours before it by the primary key (joined
    -- to every hour, the lookup ran once an hour: 0.8 s for 336,000 hours, against 0.2 s)
    WITH f AS MATERIALIZED (
        SELECT m.meter_id, (SELECT min(r.ts) FROM readings r WHERE r.meter_id = m.meter_id) AS first_read
        FROM (SELECT DISTINCT meter_id FROM consumption_hourly) m
    )
    SELECT f.meter_id, c.hour INTO lost_meter, lost_hour
    FROM f CROSS JOIN LATERAL (
        SELECT x.hour, x.intervals FROM consumption_hourly x
        WHERE x.meter_id = f.meter_id AND x.hour < coalesce(f.first_read, 'infinity')
        OFFSET 0  -- kept a lateral scan of the meter's hours, not a join over every hour
    ) c
    WHERE f.first_read IS NULL
       OR c.intervals > (SELECT count(*) FROM readings r
                         WHERE r.meter_id = f.meter_id AND r.ts > f.first_read AND r.ts <= c.hour + interval '1 hour')
    ORDER BY c.hour, f.meter_id
    LIMIT 1;
    IF lost_meter IS NOT NULL THEN
        RAISE EXCEPTION 'the consumption stored for meter % in the hour from % UTC counts reads no longer '
                        'stored (dropped?): it cannot be computed again in %, and changing the zone would lose it',
                        quote_literal(lost_meter), to_char(lost_hour AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                        p_zone
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'restore the readings dropped and run it again; or give that consumption up first, '
                         'each meter''s hours before its first reading stored: DELETE FROM consumption_hourly c '
                         'WHERE hour < coalesce((SELECT min(ts) FROM readings r WHERE r.meter_id = c.meter_id), '
                         '''infinity'') (the change computes its days and DMA hours again)';
    END IF;
    UPDATE utility_settings SET value = p_zone, changed_at = now() WHERE name = 'timezone';
    -- Rows laid out in the old zone's hours would not be replaced by the new zone's: start afresh (the
    -- days and DMA hours too when no reading is left, the hours given up as the hint says).
    DELETE FROM consumption_hourly;
    DELETE FROM consumption_daily;
    DELETE FROM dma_consumption_hourly;
    IF first_ts IS NULL THEN
        RETURN 0;
    END IF;
    RETURN refresh_consumption(first_ts, last_ts + interval '1 microsecond');
END
$$;
COMMENT ON FUNCTION set_utility_timezone(text) IS
    'the utility''s IANA time zone set, every stored hour and day of consumption recomputed in it; waits for the refreshes under way, as one of them; refused while stored consumption counts reads no longer stored';
