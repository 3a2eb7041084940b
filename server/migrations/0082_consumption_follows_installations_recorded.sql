-- Collector migration 0076 has the consumption refreshes leave out the interval an installation of its
-- meter reaches and none holds whole (the water between a re-fitted meter's old place and its new). A
-- job card is mostly recorded after the reads around it were refreshed (a re-fit keyed in the next
-- day, an exchange entered late, an installation withdrawn or its dates corrected): the stored hours
-- and days kept what they held until a refresh came by those days again, which a VEE round does only
-- for its own two days. Now an installation recorded, changed or withdrawn refreshes its meter's
-- consumption around each instant it adds or takes away (installed_at, removed_at), in the job card's
-- own transaction, as an edit of a read does; and this migration refreshes it around every installation
-- recorded before it.
--
-- Around an instant: from the meter's last good read before it (the first read, when none before is
-- good) to its first good read after it (its newest read, when none is): every interval whether the
-- instant cuts, or bad reads hold away from billing, turns on. Nothing where no interval can: a meter
-- with no read before the instant and a good read first after it (a new meter fitted before its reads,
-- the job cards of a fleet recorded before it is read): a job card costs a few index lookups there.

-- The meter's consumption around each (meter, instant) given, as above; the hourly rows written. Every
-- window in one refresh (collector migration 0076's refresh_meter_consumption_windows): a statement of
-- thousands of job cards, or this migration's catch-up, recomputes each DMA's hours once.
CREATE FUNCTION refresh_consumption_around(p_meters text[], p_instants timestamptz[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_meters text[];
    v_from   timestamptz[];
    v_to     timestamptz[];
BEGIN
    SELECT array_agg(w.meter_id), array_agg(w.since), array_agg(w.until) INTO v_meters, v_from, v_to
    FROM (SELECT DISTINCT u.meter_id, u.instant FROM unnest(p_meters, p_instants) AS u(meter_id, instant)
          WHERE u.meter_id IS NOT NULL AND u.instant IS NOT NULL AND u.instant <> 'infinity') b
    CROSS JOIN LATERAL (
        SELECT b.meter_id,
               coalesce(
                   (SELECT max(r.ts) FROM readings r WHERE r.meter_id = b.meter_id AND r.ts < b.instant
                      AND NOT EXISTS (SELECT 1 FROM register_discontinuities d
                                      WHERE d.meter_id = r.meter_id AND d.ts = r.ts AND d.kind = 'bad_read')),
                   (SELECT min(r.ts) FROM readings r WHERE r.meter_id = b.meter_id),
                   b.instant) AS since,
               coalesce(
                   (SELECT min(r.ts) FROM readings r WHERE r.meter_id = b.meter_id AND r.ts > b.instant
                      AND NOT EXISTS (SELECT 1 FROM register_discontinuities d
                                      WHERE d.meter_id = r.meter_id AND d.ts = r.ts AND d.kind = 'bad_read')),
                   (SELECT max(r.ts) FROM readings r WHERE r.meter_id = b.meter_id),
                   b.instant) + interval '1 microsecond' AS until
    ) w
    WHERE EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = b.meter_id AND r.ts < b.instant)
       OR NOT coalesce((SELECT NOT EXISTS (SELECT 1 FROM register_discontinuities d
                                           WHERE d.meter_id = r.meter_id AND d.ts = r.ts AND d.kind = 'bad_read')
                        FROM readings r WHERE r.meter_id = b.meter_id AND r.ts >= b.instant
                        ORDER BY r.ts LIMIT 1), true);
    IF v_meters IS NULL THEN
        RETURN 0;
    END IF;
    RETURN refresh_meter_consumption_windows(v_meters, v_from, v_to);
END
$$;
COMMENT ON FUNCTION refresh_consumption_around(text[], timestamptz[]) IS
    'consumption of each meter around each instant given (an installation''s installed_at or removed_at), recomputed';

-- The instants a statement on meter_installations added or took away, each meter's consumption around them.
CREATE FUNCTION installations_refresh_consumption() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM refresh_consumption_around(array_agg(e.meter_id), array_agg(e.instant))
        FROM (SELECT meter_id, installed_at AS instant FROM new_rows
              UNION SELECT meter_id, removed_at FROM new_rows WHERE removed_at IS NOT NULL) e;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM refresh_consumption_around(array_agg(e.meter_id), array_agg(e.instant))
        FROM (SELECT meter_id, installed_at AS instant FROM old_rows
              UNION SELECT meter_id, removed_at FROM old_rows WHERE removed_at IS NOT NULL) e;
    ELSE  -- an update: the instants that changed (a card's register corrected changes none)
        PERFORM refresh_consumption_around(array_agg(e.meter_id), array_agg(e.instant))
        FROM (
            (SELECT meter_id, installed_at AS instant FROM old_rows
             UNION SELECT meter_id, removed_at FROM old_rows WHERE removed_at IS NOT NULL
             EXCEPT
             (SELECT meter_id, installed_at FROM new_rows
              UNION SELECT meter_id, removed_at FROM new_rows WHERE removed_at IS NOT NULL))
            UNION
            (SELECT meter_id, installed_at FROM new_rows
             UNION SELECT meter_id, removed_at FROM new_rows WHERE removed_at IS NOT NULL
             EXCEPT
             (SELECT meter_id, installed_at FROM old_rows
              UNION SELECT meter_id, removed_at FROM old_rows WHERE removed_at IS NOT NULL))
        ) e;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER installations_refresh_consumption_insert AFTER INSERT ON meter_installations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION installations_refresh_consumption();
CREATE TRIGGER installations_refresh_consumption_update AFTER UPDATE ON meter_installations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION installations_refresh_consumption();
CREATE TRIGGER installations_refresh_consumption_delete AFTER DELETE ON meter_installations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION installations_refresh_consumption();

-- the installations recorded before this migration, their stored consumption as 0076 counts it
SELECT refresh_consumption_around(array_agg(e.meter_id), array_agg(e.instant))
FROM (SELECT meter_id, installed_at AS instant FROM meter_installations
      UNION SELECT meter_id, removed_at FROM meter_installations WHERE removed_at IS NOT NULL) e;
