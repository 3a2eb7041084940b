-- refresh_consumption recomputes whole local days of every meter. A VEE round refreshed only its own
-- two days, yet it writes and deletes estimates as far back as a gap opened (up to 62 days) and a
-- late read re-estimates all of a gap's estimates: consumption_hourly, which NEM12 is built from,
-- kept the hours from before (a 10-day gap: NEM12 0.50 m³ against a register difference of
-- 2.42 m³). Refreshing the whole fleet from the oldest such read would redo weeks of every meter
-- for one meter's gap; this refreshes only the meters named, each from its own instant.
--
-- refresh_meter_consumption(meters, froms, to): consumption_hourly and consumption_daily of each
-- meter for the local days covering [its from, to), and dma_consumption_hourly of those meters'
-- DMAs for the same hours; returns the hourly rows written. A meter named twice is refreshed from
-- its earliest instant. Takes its turn with refresh_consumption (the same transaction lock).
CREATE FUNCTION refresh_meter_consumption(p_meters text[], p_from timestamptz[], p_to timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    zone    constant text := utility_timezone();
    v_to    timestamptz := local_next_day_start(p_to - interval '1 microsecond', zone);
    written bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons', as refresh_consumption
    CREATE TEMP TABLE IF NOT EXISTS refresh_meter_scope (meter_id text PRIMARY KEY, v_from timestamptz NOT NULL)
        ON COMMIT DROP;
    TRUNCATE refresh_meter_scope;
    INSERT INTO refresh_meter_scope (meter_id, v_from)
    SELECT u.meter_id, local_day_start(min(u.since), zone)
    FROM unnest(p_meters, p_from) AS u(meter_id, since)
    WHERE u.meter_id IS NOT NULL AND u.since IS NOT NULL
    GROUP BY u.meter_id
    HAVING local_day_start(min(u.since), zone) < v_to;

    DELETE FROM consumption_hourly c USING refresh_meter_scope s
    WHERE c.meter_id = s.meter_id AND c.hour >= s.v_from AND c.hour < v_to;
    INSERT INTO consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown)
    WITH r AS (
        SELECT x.meter_id, x.ts, x.volume_m3, x.quality
        FROM refresh_meter_scope s JOIN readings x ON x.meter_id = s.meter_id AND x.ts > s.v_from AND x.ts <= v_to
        UNION ALL
        SELECT p.meter_id, p.ts, p.volume_m3, p.quality
        FROM refresh_meter_scope s CROSS JOIN LATERAL (
            SELECT x.meter_id, x.ts, x.volume_m3, x.quality FROM readings x
            WHERE x.meter_id = s.meter_id AND x.ts <= s.v_from ORDER BY x.ts DESC LIMIT 1
        ) p
    ), d AS (
        SELECT r.meter_id, r.ts, r.quality, lag(r.ts) OVER w AS prev_ts,
               interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c
        FROM r LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
        WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts)
    )
    SELECT d.meter_id, date_trunc('hour', d.ts - interval '1 microsecond', zone),
           coalesce(sum(d.c), 0), count(*), count(*) FILTER (WHERE d.quality <> 'actual'),
           count(*) FILTER (WHERE d.c IS NULL)
    FROM d JOIN refresh_meter_scope s USING (meter_id)
    WHERE d.prev_ts IS NOT NULL AND d.ts > s.v_from
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;

    DELETE FROM consumption_daily c USING refresh_meter_scope s
    WHERE c.meter_id = s.meter_id AND c.day >= s.v_from AND c.day < v_to;
    INSERT INTO consumption_daily (meter_id, day, consumption_m3, intervals, not_actual, unknown)
    SELECT c.meter_id, date_trunc('day', c.hour, zone), sum(c.consumption_m3), sum(c.intervals),
           sum(c.not_actual), sum(c.unknown)
    FROM consumption_hourly c JOIN refresh_meter_scope s USING (meter_id)
    WHERE c.hour >= s.v_from AND c.hour < v_to
    GROUP BY 1, 2;

    -- each DMA of a meter named, from the earliest of its named meters' days
    DELETE FROM dma_consumption_hourly h USING (
        SELECT m.dma, min(s.v_from) AS v_from FROM refresh_meter_scope s JOIN meters m USING (meter_id)
        WHERE m.dma IS NOT NULL AND m.role = 'customer' GROUP BY m.dma
    ) a
    WHERE h.dma = a.dma AND h.hour >= a.v_from AND h.hour < v_to;
    INSERT INTO dma_consumption_hourly (dma, hour, consumption_m3, meters, not_actual, unknown)
    SELECT m.dma, c.hour, sum(c.consumption_m3), count(*), sum(c.not_actual), sum(c.unknown)
    FROM consumption_hourly c JOIN meters m USING (meter_id) JOIN (
        SELECT m2.dma, min(s.v_from) AS v_from FROM refresh_meter_scope s JOIN meters m2 USING (meter_id)
        WHERE m2.dma IS NOT NULL AND m2.role = 'customer' GROUP BY m2.dma
    ) a ON a.dma = m.dma
    WHERE m.role = 'customer' AND c.hour >= a.v_from AND c.hour < v_to
    GROUP BY 1, 2;
    RETURN written;
END
$$;
COMMENT ON FUNCTION refresh_meter_consumption(text[], timestamptz[], timestamptz) IS
    'consumption_hourly and consumption_daily of the meters named, each for the local days [its from, p_to) touch, and their DMAs'' dma_consumption_hourly, recomputed; one refresh at a time';
