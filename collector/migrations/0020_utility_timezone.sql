-- The utility's own calendar. Readings are instants (timestamptz, UTC on the wire), but a billing
-- day, a month and "the hour 07:00-08:00" are the utility's local clock: a customer in Sydney used
-- water on the 3rd of March in Sydney, not from 13:00 to 13:00 UTC.
--
-- One setting, the IANA time zone, kept in the database so that the collector (which maintains
-- consumption_*) and the server (which turns "2026-02" into a period) cannot disagree. 'UTC' until
-- set; change it with set_utility_timezone(), which also recomputes the stored consumption.
--
-- consumption_hourly.hour and consumption_daily.day stay timestamptz: the instant the local hour or
-- day begins (a local day is 23 or 25 hours long when the clocks change). With the zone 'UTC' they
-- are what migration 0015 wrote.
CREATE TABLE utility_settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO utility_settings (name, value) VALUES ('timezone', 'UTC');

CREATE FUNCTION utility_timezone() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value FROM utility_settings WHERE name = 'timezone'), 'UTC')
$$;

-- The instant the local day containing p_moment begins, and the one after it.
CREATE FUNCTION local_day_start(p_moment timestamptz, p_zone text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT ((p_moment AT TIME ZONE p_zone)::date)::timestamp AT TIME ZONE p_zone
$$;
CREATE FUNCTION local_next_day_start(p_moment timestamptz, p_zone text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT ((p_moment AT TIME ZONE p_zone)::date + 1)::timestamp AT TIME ZONE p_zone
$$;

-- Recompute the whole local days covering [p_from, p_to); returns the hourly rows written.
-- As 0015's, with the utility's zone for hours and days (date_trunc(unit, ts, zone): the local hour
-- or day that began at or before ts, as an instant).
CREATE OR REPLACE FUNCTION refresh_consumption(p_from timestamptz, p_to timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    zone   constant text := utility_timezone();
    v_from timestamptz := local_day_start(p_from, zone);
    v_to   timestamptz := local_next_day_start(p_to - interval '1 microsecond', zone);
    written bigint;
BEGIN
    DELETE FROM consumption_hourly WHERE hour >= v_from AND hour < v_to;
    INSERT INTO consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown)
    WITH r AS (
        SELECT meter_id, ts, volume_m3, quality FROM readings WHERE ts > v_from AND ts <= v_to
        UNION ALL
        SELECT p.meter_id, p.ts, p.volume_m3, p.quality
        FROM meters m CROSS JOIN LATERAL (
            SELECT x.meter_id, x.ts, x.volume_m3, x.quality FROM readings x
            WHERE x.meter_id = m.meter_id AND x.ts <= v_from ORDER BY x.ts DESC LIMIT 1
        ) p
    ), d AS (
        SELECT r.meter_id, r.ts, r.quality, lag(r.ts) OVER w AS prev_ts,
               interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c
        FROM r LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
        WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts)
    )
    SELECT meter_id, date_trunc('hour', ts - interval '1 microsecond', zone),
           coalesce(sum(c), 0), count(*), count(*) FILTER (WHERE quality <> 'actual'), count(*) FILTER (WHERE c IS NULL)
    FROM d WHERE prev_ts IS NOT NULL AND ts > v_from
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;

    DELETE FROM consumption_daily WHERE day >= v_from AND day < v_to;
    INSERT INTO consumption_daily (meter_id, day, consumption_m3, intervals, not_actual, unknown)
    SELECT meter_id, date_trunc('day', hour, zone), sum(consumption_m3), sum(intervals), sum(not_actual), sum(unknown)
    FROM consumption_hourly WHERE hour >= v_from AND hour < v_to
    GROUP BY 1, 2;

    DELETE FROM dma_consumption_hourly WHERE hour >= v_from AND hour < v_to;
    INSERT INTO dma_consumption_hourly (dma, hour, consumption_m3, meters, not_actual, unknown)
    SELECT m.dma, c.hour, sum(c.consumption_m3), count(*), sum(c.not_actual), sum(c.unknown)
    FROM consumption_hourly c JOIN meters m USING (meter_id)
    WHERE m.dma IS NOT NULL AND m.role = 'customer' AND c.hour >= v_from AND c.hour < v_to
    GROUP BY 1, 2;
    RETURN written;
END
$$;

CREATE OR REPLACE VIEW dma_consumption_daily AS
SELECT dma, date_trunc('day', hour, utility_timezone()) AS day, sum(consumption_m3) AS consumption_m3,
       max(meters) AS meters, sum(not_actual) AS not_actual, sum(unknown) AS unknown
FROM dma_consumption_hourly
GROUP BY 1, 2;

-- Set the zone (an IANA name PostgreSQL knows, e.g. 'Europe/London') and recompute every stored
-- hour and day in it; returns the hourly rows written. An unknown name changes nothing.
CREATE FUNCTION set_utility_timezone(p_zone text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first_ts timestamptz;
    last_ts  timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(p_zone)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'use an IANA name such as Europe/London';
    END IF;
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
