-- open_transactions_floor() (0072, 0074) and open_transactions_floor_holder() (0073, 0074) no
-- longer count a backup's pg_dump: a session whose application_name is 'pg_dump' (pg_dump's own,
-- pg_dumpall's per database too, unless PGAPPNAME replaces it).
--
-- pg_dump reads the whole database in one transaction, REPEATABLE READ, READ ONLY: it writes no
-- row, so its start dates none, and it cannot hold back where the rows that arrive later begin. Yet
-- it was counted from its start as a writer might be: a nightly dump of a utility's database (hours
-- over a year of hourly reads) held detection's arrivals back for as long as it ran (every run
-- re-read as arrived every reading since the dump began), billing's next_changed_since too (each
-- pull sent again what the one before had sent), and, past --floor-lag-warning (an hour), the
-- warning named the dump and advised ending it (pg_terminate_backend): the backup killed on our
-- word. A session that calls itself pg_dump is taken at its word: name a session that writes
-- readings otherwise.
--
-- The bodies are 0074's, with that one condition in each.
CREATE OR REPLACE FUNCTION open_transactions_floor() RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    floor timestamptz;
    unseen text;
BEGIN
    -- One query, one view of the sessions. A row this role may not see has a NULL xact_start (as
    -- one not in a transaction has) and a NULL backend_type: pg_stat_activity shows it to a
    -- superuser, to pg_read_all_stats and to the session's own role or roles it inherits.
    -- Background workers have no role, or the role that started them (TimescaleDB's).
    SELECT least(now(), min(a.xact_start)),
           string_agg(DISTINCT a.usename::text, ', ') FILTER (
               WHERE a.usesysid IS NOT NULL AND NOT pg_has_role(a.usesysid, 'USAGE')
                 AND NOT pg_has_role('pg_read_all_stats', 'USAGE'))
      INTO floor, unseen
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
       AND (a.backend_type IS NULL
            OR a.backend_type IN ('client backend', 'logical replication worker',
                                  'logical replication apply worker',
                                  'logical replication tablesync worker',
                                  'logical replication parallel worker'))
       AND coalesce(a.application_name, '') <> 'pg_dump';  -- a backup's read-only transaction
    IF unseen IS NOT NULL THEN
        RAISE EXCEPTION 'open_transactions_floor cannot see when the transactions of role(s) % began: GRANT pg_read_all_stats TO %', unseen, quote_ident(current_user::text)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN floor;
END
$$;

-- The same sessions as the floor's, so the session named is the one that holds it.
CREATE OR REPLACE FUNCTION open_transactions_floor_holder()
    RETURNS TABLE (pid integer, role text, application_name text, backend_type text, state text,
                   xact_start timestamptz, age interval)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.pid, a.usename::text, a.application_name, a.backend_type, a.state,
           a.xact_start, clock_timestamp() - a.xact_start
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
       AND a.backend_type IN ('client backend', 'logical replication worker',
                              'logical replication apply worker',
                              'logical replication tablesync worker',
                              'logical replication parallel worker')
       AND coalesce(a.application_name, '') <> 'pg_dump'  -- a backup's read-only transaction
     ORDER BY a.xact_start, a.pid
     LIMIT 1
$$;
