-- Interval consumption derived from the register, correct across rollovers, replacements and
-- reverse flow (register_discontinuities says what each backward step was).
--
-- The Apache edition of TimescaleDB has no continuous aggregates (nor compression, nor retention
-- policies: "not supported under the current apache license"), and the embedded demo database has
-- no TimescaleDB at all, so these are maintained tables, refreshed by refresh_consumption(from, to)
-- for whole UTC days. A delta between two reads belongs to the hour containing its closing read
-- (ts - 1 µs, so a read at 10:00 closes the hour 09:00-10:00).

-- The consumption of each reading's interval (previous read, this read]: NULL when unknown (a
-- backward step VEE has not explained, or explained as unexplained).
CREATE FUNCTION interval_consumption(
    volume_m3 numeric, previous_volume_m3 numeric, has_discontinuity boolean, discontinuity_m3 numeric
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN has_discontinuity THEN discontinuity_m3
        WHEN volume_m3 >= previous_volume_m3 THEN volume_m3 - previous_volume_m3
    END
$$;

-- One meter's consumption over (p_from, p_to], from the read at or before p_from to the last read
-- at or before p_to; NULL if some interval in between is unknown.
CREATE FUNCTION meter_consumption(p_meter text, p_from timestamptz, p_to timestamptz)
RETURNS numeric LANGUAGE sql STABLE AS $$
    WITH r AS (
        (SELECT ts, volume_m3 FROM readings WHERE meter_id = p_meter AND ts <= p_from ORDER BY ts DESC LIMIT 1)
        UNION ALL
        SELECT ts, volume_m3 FROM readings WHERE meter_id = p_meter AND ts > p_from AND ts <= p_to
    ), d AS (
        SELECT r.ts, lag(r.ts) OVER w AS prev_ts,
               interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c
        FROM r LEFT JOIN register_discontinuities dc ON dc.meter_id = p_meter AND dc.ts = r.ts
        WINDOW w AS (ORDER BY r.ts)
    )
    SELECT CASE WHEN bool_and(c IS NOT NULL) THEN coalesce(sum(c), 0) END
    FROM d WHERE prev_ts IS NOT NULL
$$;

CREATE TABLE consumption_hourly (
    meter_id          text NOT NULL,
    hour              timestamptz NOT NULL,
    consumption_m3    numeric NOT NULL,
    intervals         integer NOT NULL,   -- reads closing an interval in this hour
    not_actual        integer NOT NULL,   -- of which estimated, substituted or edited
    unknown           integer NOT NULL,   -- of which the consumption is unknown (not in the sum)
    PRIMARY KEY (meter_id, hour)
);

CREATE TABLE consumption_daily (
    meter_id       text NOT NULL,
    day            timestamptz NOT NULL,  -- UTC midnight
    consumption_m3 numeric NOT NULL,
    intervals      integer NOT NULL,
    not_actual     integer NOT NULL,
    unknown        integer NOT NULL,
    PRIMARY KEY (meter_id, day)
);

CREATE TABLE dma_consumption_hourly (
    dma            text NOT NULL,
    hour           timestamptz NOT NULL,
    consumption_m3 numeric NOT NULL,      -- customer meters only (inlets measure what goes in)
    meters         integer NOT NULL,
    not_actual     integer NOT NULL,
    unknown        integer NOT NULL,
    PRIMARY KEY (dma, hour)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('consumption_hourly', 'hour', chunk_time_interval => interval '30 days');
    END IF;
END
$$;

-- Recompute the whole UTC days covering [p_from, p_to); returns the hourly rows written.
CREATE FUNCTION refresh_consumption(p_from timestamptz, p_to timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    origin constant timestamptz := '2000-01-01T00:00:00Z';
    v_from timestamptz := date_bin('1 day', p_from, origin);
    v_to   timestamptz := date_bin('1 day', p_to - interval '1 microsecond', origin) + interval '1 day';
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
    SELECT meter_id, date_bin('1 hour', ts - interval '1 microsecond', origin),
           coalesce(sum(c), 0), count(*), count(*) FILTER (WHERE quality <> 'actual'), count(*) FILTER (WHERE c IS NULL)
    FROM d WHERE prev_ts IS NOT NULL AND ts > v_from
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;

    DELETE FROM consumption_daily WHERE day >= v_from AND day < v_to;
    INSERT INTO consumption_daily (meter_id, day, consumption_m3, intervals, not_actual, unknown)
    SELECT meter_id, date_bin('1 day', hour, origin), sum(consumption_m3), sum(intervals), sum(not_actual), sum(unknown)
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
