-- A detection run takes a reading as arrived since the previous run by its received_at, which is
-- its writing transaction's start (now()). The run compared it with the previous run's seen_at
-- (0058) less a fixed 10 minutes: an ingest or VEE transaction open longer than that, begun before
-- the previous run read the readings and committed after, wrote readings no run took as arrived, so
-- an ended episode in them older than opens_within was never opened (collector.detection_job).
--
-- readings_arrival_floor() is now(), or the start of the oldest transaction still open in this
-- database if earlier: every reading committed after it is asked has a received_at at or after it.
-- A run records it as arrivals_from, asked before it reads the readings, and the next run takes as
-- arrived what was received at or after it. It reads pg_stat_activity on behalf of its owner (who
-- runs the migrations), as server migration 0058's billing_changes_floor() does, so a collector on
-- its own role sees the server's and VEE's sessions too; an owner that cannot see a session in this
-- database refuses, naming the grant, rather than give a floor past a transaction it cannot see.
CREATE FUNCTION readings_arrival_floor() RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    floor timestamptz;
    unseen text;
BEGIN
    -- One query, one view of the sessions. A row this role may not see has a NULL xact_start (as
    -- one not in a transaction has): pg_stat_activity shows it to a superuser, to pg_read_all_stats
    -- and to the session's own role or roles it inherits. Background workers have no role.
    SELECT least(now(), min(a.xact_start)),
           string_agg(DISTINCT a.usename::text, ', ') FILTER (
               WHERE a.usesysid IS NOT NULL AND NOT pg_has_role(a.usesysid, 'USAGE')
                 AND NOT pg_has_role('pg_read_all_stats', 'USAGE'))
      INTO floor, unseen
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid();
    IF unseen IS NOT NULL THEN
        RAISE EXCEPTION 'readings_arrival_floor cannot see when the transactions of role(s) % began: GRANT pg_read_all_stats TO %', unseen, quote_ident(current_user::text)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN floor;
END
$$;

-- NULL on the runs recorded before: the run after them takes seen_at less the old 10 minutes.
ALTER TABLE detection_runs ADD COLUMN arrivals_from timestamptz;
