-- A meter fitted again (refurbished, or taken to another service point) has an interval from its last
-- read where it was to its first read where it is now: the water of a bench test, a refurbishment, or
-- nothing but two registers of different places. Billing bills it to no one, and NEM12 and the meter
-- page left it out, but consumption_hourly, consumption_daily and dma_consumption_hourly counted it:
-- a DMA's customers took the meter's bench water (a reset register: its register differences) as
-- used in the district the meter went to, and its balance (inlet less customers) was that much off.
--
-- The refreshes now leave out an interval (previous read, read] that an installation of its meter
-- reaches (read >= installed_at, previous read < removed_at) and that no installation holds whole, as
-- billing holds it (server.billing.repository.determinant_lines): both reads within the installation
-- [installed_at, removed_at], neither before its first good read nor after its last (a bad read, VEE's,
-- opens and closes no bill). Left out: the interval across a re-fit, a removal or an installation; the
-- interval closing at a read at installed_at of a meter read before it, unless the installation the
-- meter leaves at that instant holds it; the intervals to a bad read that begins an installation, and
-- from one that ends it. An interval no installation reaches (a meter never recorded as fitted: a
-- fleet without job cards, a meter in the store between two) stays as it was.
--
-- meter_installations is a server table (server migration 0010), and collector migrations run before
-- the server's: on a fresh database this runs before the table exists. installation_spans() reads it
-- when it is there and gives no span when it is not (to_regclass, each call: PL/pgSQL plans its query
-- at its first run, so nothing here names the table before it exists). One definition, here, rather
-- than a stub a server migration replaces: a later collector migration replacing the function again
-- would silently put the stub back on a fresh database (as server migration 0066 redefines a collector
-- trigger function). The stored days of installations recorded after their reads were refreshed are
-- refreshed when the job card is recorded (server migration 0082).

-- The installations of the meters named (NULL: every meter), as spans [installed_at, removed_at]; none
-- before server migration 0010 made the table.
CREATE FUNCTION installation_spans(p_meters text[])
RETURNS TABLE (meter_id text, installed_at timestamptz, removed_at timestamptz)
LANGUAGE plpgsql STABLE ROWS 10000 AS $$
BEGIN
    IF to_regclass('meter_installations') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT i.meter_id, i.installed_at, coalesce(i.removed_at, 'infinity')
        FROM meter_installations i
        WHERE p_meters IS NULL
        UNION ALL  -- joined, not `= ANY (p_meters)`: thousands of meters named, each row against each
        SELECT i.meter_id, i.installed_at, coalesce(i.removed_at, 'infinity')
        FROM (SELECT DISTINCT m FROM unnest(p_meters) m) u JOIN meter_installations i ON i.meter_id = u.m
        WHERE p_meters IS NOT NULL;
END
$$;
COMMENT ON FUNCTION installation_spans(text[]) IS
    'the meters'' installations [installed_at, removed_at (infinity: still fitted)]; none while meter_installations does not exist';

-- Whether the interval (p_prev, p_ts] of p_meter, its reads bad reads or not, is one no installation
-- holds whole though one reaches it (see above), given the meter's spans (installation_spans).
-- Good reads are looked up only when an end of the interval is a bad read: rare.
CREATE FUNCTION left_out_between_installations(
    p_meter text, p_prev timestamptz, p_ts timestamptz, p_prev_bad boolean, p_bad boolean,
    p_spans tstzrange[]
) RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM unnest(p_spans) s WHERE p_ts >= lower(s) AND p_prev < upper(s))
       AND NOT EXISTS (
           SELECT 1 FROM unnest(p_spans) s
           WHERE p_prev >= lower(s) AND p_ts <= upper(s)
             AND (NOT p_prev_bad OR EXISTS (
                 SELECT 1 FROM readings g WHERE g.meter_id = p_meter AND g.ts >= lower(s) AND g.ts < p_prev
                   AND NOT EXISTS (SELECT 1 FROM register_discontinuities b
                                   WHERE b.meter_id = g.meter_id AND b.ts = g.ts AND b.kind = 'bad_read')))
             AND (NOT p_bad OR EXISTS (
                 SELECT 1 FROM readings g WHERE g.meter_id = p_meter AND g.ts > p_ts AND g.ts <= upper(s)
                   AND NOT EXISTS (SELECT 1 FROM register_discontinuities b
                                   WHERE b.meter_id = g.meter_id AND b.ts = g.ts AND b.kind = 'bad_read'))))
$$;
COMMENT ON FUNCTION left_out_between_installations(text, timestamptz, timestamptz, boolean, boolean, tstzrange[]) IS
    'an interval an installation reaches and none holds whole (from before its first good read, or past its last): no one''s water, not counted';

-- 0061's refresh_consumption_in_turn (0020's work), leaving those intervals out.
CREATE OR REPLACE FUNCTION refresh_consumption_in_turn(p_from timestamptz, p_to timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    zone   constant text := utility_timezone();
    v_from timestamptz := local_day_start(p_from, zone);
    v_to   timestamptz := local_next_day_start(p_to - interval '1 microsecond', zone);
    written bigint;
BEGIN
    DELETE FROM consumption_hourly WHERE hour >= v_from AND hour < v_to;
    INSERT INTO consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown)
    WITH before AS (  -- each meter's read before the days
        SELECT p.meter_id, p.ts, p.volume_m3, p.quality
        FROM meters m CROSS JOIN LATERAL (
            SELECT x.meter_id, x.ts, x.volume_m3, x.quality FROM readings x
            WHERE x.meter_id = m.meter_id AND x.ts <= v_from ORDER BY x.ts DESC LIMIT 1
        ) p
    ), r AS (
        SELECT meter_id, ts, volume_m3, quality FROM readings WHERE ts > v_from AND ts <= v_to
        UNION ALL
        SELECT * FROM before
    ), fits AS (
        SELECT * FROM installation_spans(NULL)
    ), candidates AS (
        -- the read closing each interval that may be one to leave out: the interval across an instant of
        -- an installation after the meter's read before the days (none: any instant), to the first
        -- read at or after installed_at, or after removed_at; and those to and from a bad read from that
        -- read on. An interval crossing no instant and with no bad read at either end lies within one
        -- installation or none, and is held whole or reached by none: most meters have no candidate.
        SELECT f.meter_id, c.ts FROM fits f LEFT JOIN before b USING (meter_id)
        CROSS JOIN LATERAL (SELECT x.ts FROM readings x WHERE x.meter_id = f.meter_id AND x.ts >= f.installed_at
                            ORDER BY x.ts LIMIT 1) c
        WHERE f.installed_at > coalesce(b.ts, '-infinity') AND f.installed_at <= v_to
        UNION
        SELECT f.meter_id, c.ts FROM fits f LEFT JOIN before b USING (meter_id)
        CROSS JOIN LATERAL (SELECT x.ts FROM readings x WHERE x.meter_id = f.meter_id AND x.ts > f.removed_at
                            ORDER BY x.ts LIMIT 1) c
        WHERE f.removed_at > coalesce(b.ts, '-infinity') AND f.removed_at <= v_to
        UNION
        SELECT x.meter_id, c.ts FROM register_discontinuities x LEFT JOIN before b USING (meter_id)
        CROSS JOIN LATERAL (
            SELECT x.ts
            UNION ALL
            (SELECT y.ts FROM readings y WHERE y.meter_id = x.meter_id AND y.ts > x.ts ORDER BY y.ts LIMIT 1)
        ) c
        WHERE x.kind = 'bad_read' AND x.ts >= coalesce(b.ts, '-infinity') AND x.ts <= v_to
          AND x.meter_id IN (SELECT meter_id FROM fits)
    ), left_out AS (  -- the candidates of the days an installation reaches and none holds whole
        SELECT c.meter_id, c.ts
        FROM candidates c
        JOIN (
            SELECT f.meter_id, array_agg(tstzrange(f.installed_at, f.removed_at, '[]')) AS spans
            FROM fits f WHERE f.meter_id IN (SELECT meter_id FROM candidates) GROUP BY f.meter_id
        ) s USING (meter_id)
        CROSS JOIN LATERAL (SELECT p.ts FROM readings p WHERE p.meter_id = c.meter_id AND p.ts < c.ts
                            ORDER BY p.ts DESC LIMIT 1) p
        WHERE c.ts > v_from AND c.ts <= v_to
          AND left_out_between_installations(
              c.meter_id, p.ts, c.ts,
              EXISTS (SELECT 1 FROM register_discontinuities x
                      WHERE x.meter_id = c.meter_id AND x.ts = p.ts AND x.kind = 'bad_read'),
              EXISTS (SELECT 1 FROM register_discontinuities x
                      WHERE x.meter_id = c.meter_id AND x.ts = c.ts AND x.kind = 'bad_read'),
              s.spans)
    ), d AS (
        SELECT r.meter_id, r.ts, r.quality, lag(r.ts) OVER w AS prev_ts,
               interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c
        FROM r LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
        WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts)
    )
    SELECT d.meter_id, date_trunc('hour', d.ts - interval '1 microsecond', zone),
           coalesce(sum(d.c), 0), count(*), count(*) FILTER (WHERE d.quality <> 'actual'),
           count(*) FILTER (WHERE d.c IS NULL)
    FROM d
    WHERE d.prev_ts IS NOT NULL AND d.ts > v_from
      AND NOT EXISTS (SELECT 1 FROM left_out l WHERE l.meter_id = d.meter_id AND l.ts = d.ts)
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

-- The windows [from, to) given, each key's (a meter's, a DMA's) that meet or overlap merged into one:
-- a window beginning after every earlier one of its key ends begins an island. Empty windows dropped.
CREATE FUNCTION merged_windows(p_keys text[], p_from timestamptz[], p_to timestamptz[])
RETURNS TABLE (key text, v_from timestamptz, v_to timestamptz) LANGUAGE sql IMMUTABLE AS $$
    WITH starts AS (
        SELECT u.*, u.since > max(u.until) OVER (PARTITION BY u.k ORDER BY u.since, u.until
                                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    IS NOT FALSE AS begins
        FROM unnest(p_keys, p_from, p_to) AS u(k, since, until) WHERE u.since < u.until
    ), islands AS (
        SELECT s.*, count(*) FILTER (WHERE s.begins) OVER (PARTITION BY s.k ORDER BY s.since, s.until) AS island
        FROM starts s
    )
    SELECT k, min(since), max(until) FROM islands GROUP BY k, island
$$;

-- 0065's refresh_meter_consumption, leaving those intervals out, for windows of days of their own: each
-- (meter, from, to) given refreshes the meter's local days from the one holding `from` to the one
-- holding the last instant before `to`. A meter's windows that meet or overlap are refreshed as one; a
-- DMA's hours are recomputed once, over the union of its meters' windows, after all its meters' hours.
-- One statement for every window: a statement of job cards (server migration 0082) names thousands of
-- meters, each around its own instants, and refreshing them one call each recomputed each meter's DMA
-- over those days from all its meters once for every meter (78 ms a job card in 500-meter DMAs).
CREATE FUNCTION refresh_meter_consumption_windows(p_meters text[], p_from timestamptz[], p_to timestamptz[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    zone    constant text := utility_timezone();
    v_lo    timestamptz;  -- the windows' first instant and their end: constants that spare the
    v_hi    timestamptz;  -- hypertables' chunks outside them, as refresh_meter_consumption's p_to did
    written bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons', as refresh_consumption
    CREATE TEMP TABLE IF NOT EXISTS refresh_meter_windows (
        meter_id text NOT NULL, v_from timestamptz NOT NULL, v_to timestamptz NOT NULL, PRIMARY KEY (meter_id, v_from)
    ) ON COMMIT DROP;
    TRUNCATE refresh_meter_windows;
    INSERT INTO refresh_meter_windows (meter_id, v_from, v_to)
    WITH days AS (
        SELECT u.meter_id, local_day_start(u.since, zone) AS v_from,
               local_next_day_start(u.until - interval '1 microsecond', zone) AS v_to
        FROM unnest(p_meters, p_from, p_to) AS u(meter_id, since, until)
        WHERE u.meter_id IS NOT NULL AND u.since IS NOT NULL AND u.until IS NOT NULL
    )
    SELECT w.* FROM (SELECT array_agg(meter_id) AS k, array_agg(v_from) AS f, array_agg(v_to) AS t FROM days) a
    CROSS JOIN LATERAL merged_windows(a.k, a.f, a.t) w;
    SELECT min(v_from), max(v_to) INTO v_lo, v_hi FROM refresh_meter_windows;

    DELETE FROM consumption_hourly c USING refresh_meter_windows s
    WHERE c.meter_id = s.meter_id AND c.hour >= s.v_from AND c.hour < s.v_to AND c.hour >= v_lo AND c.hour < v_hi;
    INSERT INTO consumption_hourly (meter_id, hour, consumption_m3, intervals, not_actual, unknown)
    WITH before AS (  -- each window's read before its days
        SELECT p.meter_id, s.v_from AS win, p.ts, p.volume_m3, p.quality
        FROM refresh_meter_windows s CROSS JOIN LATERAL (
            SELECT x.meter_id, x.ts, x.volume_m3, x.quality FROM readings x
            WHERE x.meter_id = s.meter_id AND x.ts <= s.v_from ORDER BY x.ts DESC LIMIT 1
        ) p
    ), r AS (
        SELECT x.meter_id, s.v_from AS win, x.ts, x.volume_m3, x.quality
        FROM refresh_meter_windows s
        JOIN readings x ON x.meter_id = s.meter_id AND x.ts > s.v_from AND x.ts <= s.v_to AND x.ts <= v_hi
        UNION ALL
        SELECT * FROM before
    ), fits AS (
        SELECT * FROM installation_spans(ARRAY(SELECT DISTINCT meter_id FROM refresh_meter_windows))
    ), candidates AS (
        -- the read closing each interval that may be one to leave out: the interval across an instant of
        -- an installation after the window's read before its days (none: any instant), to the first
        -- read at or after installed_at, or after removed_at; and those to and from a bad read from that
        -- read on. An interval crossing no instant and with no bad read at either end lies within one
        -- installation or none, and is held whole or reached by none: most meters have no candidate.
        SELECT f.meter_id, c.ts
        FROM refresh_meter_windows s JOIN fits f USING (meter_id)
        LEFT JOIN before b ON b.meter_id = s.meter_id AND b.win = s.v_from
        CROSS JOIN LATERAL (SELECT x.ts FROM readings x WHERE x.meter_id = f.meter_id AND x.ts >= f.installed_at
                            ORDER BY x.ts LIMIT 1) c
        WHERE f.installed_at > coalesce(b.ts, '-infinity') AND f.installed_at <= s.v_to
        UNION
        SELECT f.meter_id, c.ts
        FROM refresh_meter_windows s JOIN fits f USING (meter_id)
        LEFT JOIN before b ON b.meter_id = s.meter_id AND b.win = s.v_from
        CROSS JOIN LATERAL (SELECT x.ts FROM readings x WHERE x.meter_id = f.meter_id AND x.ts > f.removed_at
                            ORDER BY x.ts LIMIT 1) c
        WHERE f.removed_at > coalesce(b.ts, '-infinity') AND f.removed_at <= s.v_to
        UNION
        SELECT x.meter_id, c.ts
        FROM refresh_meter_windows s JOIN register_discontinuities x USING (meter_id)
        LEFT JOIN before b ON b.meter_id = s.meter_id AND b.win = s.v_from
        CROSS JOIN LATERAL (
            SELECT x.ts
            UNION ALL
            (SELECT y.ts FROM readings y WHERE y.meter_id = x.meter_id AND y.ts > x.ts ORDER BY y.ts LIMIT 1)
        ) c
        WHERE x.kind = 'bad_read' AND x.ts >= coalesce(b.ts, '-infinity') AND x.ts <= s.v_to
          AND x.meter_id IN (SELECT meter_id FROM fits)
    ), left_out AS (  -- the candidates of the windows an installation reaches and none holds whole
        SELECT c.meter_id, c.ts
        FROM candidates c
        JOIN (
            SELECT f.meter_id, array_agg(tstzrange(f.installed_at, f.removed_at, '[]')) AS spans
            FROM fits f WHERE f.meter_id IN (SELECT meter_id FROM candidates) GROUP BY f.meter_id
        ) s USING (meter_id)
        CROSS JOIN LATERAL (SELECT p.ts FROM readings p WHERE p.meter_id = c.meter_id AND p.ts < c.ts
                            ORDER BY p.ts DESC LIMIT 1) p
        WHERE EXISTS (SELECT 1 FROM refresh_meter_windows o
                      WHERE o.meter_id = c.meter_id AND c.ts > o.v_from AND c.ts <= o.v_to)
          AND left_out_between_installations(
              c.meter_id, p.ts, c.ts,
              EXISTS (SELECT 1 FROM register_discontinuities x
                      WHERE x.meter_id = c.meter_id AND x.ts = p.ts AND x.kind = 'bad_read'),
              EXISTS (SELECT 1 FROM register_discontinuities x
                      WHERE x.meter_id = c.meter_id AND x.ts = c.ts AND x.kind = 'bad_read'),
              s.spans)
    ), d AS (
        SELECT r.meter_id, r.win, r.ts, r.quality, lag(r.ts) OVER w AS prev_ts,
               interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c
        FROM r LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
        WINDOW w AS (PARTITION BY r.meter_id, r.win ORDER BY r.ts)
    )
    SELECT d.meter_id, date_trunc('hour', d.ts - interval '1 microsecond', zone),
           coalesce(sum(d.c), 0), count(*), count(*) FILTER (WHERE d.quality <> 'actual'),
           count(*) FILTER (WHERE d.c IS NULL)
    FROM d
    WHERE d.prev_ts IS NOT NULL AND d.ts > d.win
      AND NOT EXISTS (SELECT 1 FROM left_out l WHERE l.meter_id = d.meter_id AND l.ts = d.ts)
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;

    DELETE FROM consumption_daily c USING refresh_meter_windows s
    WHERE c.meter_id = s.meter_id AND c.day >= s.v_from AND c.day < s.v_to;
    INSERT INTO consumption_daily (meter_id, day, consumption_m3, intervals, not_actual, unknown)
    SELECT c.meter_id, date_trunc('day', c.hour, zone), sum(c.consumption_m3), sum(c.intervals),
           sum(c.not_actual), sum(c.unknown)
    FROM consumption_hourly c JOIN refresh_meter_windows s
      ON c.meter_id = s.meter_id AND c.hour >= s.v_from AND c.hour < s.v_to
    WHERE c.hour >= v_lo AND c.hour < v_hi
    GROUP BY 1, 2;

    -- each DMA of a meter named, once over the union of its meters' windows (merged as the meters' are)
    CREATE TEMP TABLE IF NOT EXISTS refresh_dma_windows (
        dma text NOT NULL, v_from timestamptz NOT NULL, v_to timestamptz NOT NULL, PRIMARY KEY (dma, v_from)
    ) ON COMMIT DROP;
    TRUNCATE refresh_dma_windows;
    INSERT INTO refresh_dma_windows (dma, v_from, v_to)
    WITH days AS (
        SELECT DISTINCT m.dma, s.v_from, s.v_to FROM refresh_meter_windows s JOIN meters m USING (meter_id)
        WHERE m.dma IS NOT NULL AND m.role = 'customer'
    )
    SELECT w.* FROM (SELECT array_agg(dma) AS k, array_agg(v_from) AS f, array_agg(v_to) AS t FROM days) a
    CROSS JOIN LATERAL merged_windows(a.k, a.f, a.t) w;
    DELETE FROM dma_consumption_hourly h USING refresh_dma_windows a
    WHERE h.dma = a.dma AND h.hour >= a.v_from AND h.hour < a.v_to AND h.hour >= v_lo AND h.hour < v_hi;
    INSERT INTO dma_consumption_hourly (dma, hour, consumption_m3, meters, not_actual, unknown)
    SELECT m.dma, c.hour, sum(c.consumption_m3), count(*), sum(c.not_actual), sum(c.unknown)
    FROM refresh_dma_windows a JOIN meters m ON m.dma = a.dma
    JOIN consumption_hourly c ON c.meter_id = m.meter_id AND c.hour >= a.v_from AND c.hour < a.v_to
    WHERE m.role = 'customer' AND c.hour >= v_lo AND c.hour < v_hi
    GROUP BY 1, 2;
    RETURN written;
END
$$;
COMMENT ON FUNCTION refresh_meter_consumption_windows(text[], timestamptz[], timestamptz[]) IS
    'consumption of each meter over the local days of each (meter, from, to) given, and of their DMAs over the union of those days, recomputed';

-- 0065's refresh_meter_consumption (each meter from its earliest instant given to p_to), as windows
-- that all end at p_to: one window a meter, and each DMA from its meters' earliest day, as before.
CREATE OR REPLACE FUNCTION refresh_meter_consumption(p_meters text[], p_from timestamptz[], p_to timestamptz)
RETURNS bigint LANGUAGE sql AS $$
    SELECT refresh_meter_consumption_windows(
        p_meters, p_from, array_fill(p_to, ARRAY[greatest(coalesce(cardinality(p_meters), 0), coalesce(cardinality(p_from), 0))]))
$$;
