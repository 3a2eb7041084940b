-- open_transactions_floor() is now(), or the start of the oldest transaction still open in this
-- database if earlier. A reading's received_at (and a removal's superseded_at, a membership change's
-- time) is its writing transaction's start, so whatever is committed after the floor is asked is at
-- or after it. Two readers rest on it:
--
-- * detection: a run took a reading as arrived since the previous run by its received_at against
--   that run's seen_at (0058) less a fixed 10 minutes: an ingest or VEE transaction open longer,
--   begun before the previous run read the readings and committed after, wrote readings no run took
--   as arrived, and an ended episode in them older than opens_within was never opened
--   (collector.detection_job). A run now records the floor as arrivals_from, asked before it reads.
-- * billing's changed_since pulls (server.billing.repository.changes_floor): the floor was read
--   from pg_stat_activity by the server itself.
--
-- pg_stat_activity shows other roles' transactions only to a superuser or pg_read_all_stats: a
-- collector or server on its own role saw none of the others' and took its own now() past a
-- transaction still open, whose rows then arrived in no later run or pull. The function reads it on
-- behalf of its owner (who runs the migrations: SECURITY DEFINER), so the callers need no grant
-- (pg_read_all_stats would also show a web-facing role every session's query text); an owner that
-- cannot see a session in this database refuses, naming the grant, rather than give a floor past a
-- transaction it cannot see.
CREATE FUNCTION open_transactions_floor() RETURNS timestamptz
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
        RAISE EXCEPTION 'open_transactions_floor cannot see when the transactions of role(s) % began: GRANT pg_read_all_stats TO %', unseen, quote_ident(current_user::text)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN floor;
END
$$;

-- NULL on the runs recorded before: the run after them takes seen_at less the old 10 minutes.
ALTER TABLE detection_runs ADD COLUMN arrivals_from timestamptz;
