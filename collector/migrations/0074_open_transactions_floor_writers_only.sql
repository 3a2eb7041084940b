-- open_transactions_floor() (0072) and open_transactions_floor_holder() (0073) count only the
-- sessions that can write aquami's rows: client backends and logical replication workers (a
-- subscriber applying readings: apply, tablesync and parallel apply workers; PostgreSQL 16 and
-- before call them all 'logical replication worker').
--
-- The floor exists because a transaction that writes readings (ingest, VEE), removals, enquiries,
-- membership changes dates its rows by its start. Both functions took the oldest transaction of
-- every backend in the database: an autovacuum worker crawling through a large chunk (hours, under
-- its cost limit) or a TimescaleDB background worker held the floor back for nothing (detection
-- re-read ever more readings as arrived, billing's pulls sent ever more again), and the floor-lag
-- warning (collector.floor_lag) named the vacuum and advised pg_terminate_backend for it: wrong
-- advice, against an anti-wraparound vacuum above all. Not counted now:
--
-- * autovacuum workers and the launcher: they write no rows (a vacuum removes dead ones).
-- * parallel workers: they run inside their leader's transaction, whose leader is a client
--   backend, counted from the same start.
-- * TimescaleDB's background workers (its launcher, a database's scheduler, its jobs: a continuous
--   aggregate's refresh, compression, retention): aquami registers one job only,
--   add_compression_policy on readings (0016, on the TSL edition), which rewrites chunks already
--   written into compressed ones and writes no reading, no received_at; no continuous aggregate
--   (consumption_* are tables written by refresh_consumption, in a client backend), no retention,
--   no add_job. A job someone adds with add_job that writes readings or enquiries would not be
--   counted: run such writes from a client session.
-- * walsenders, the checkpointer, the background writer and other auxiliary processes.
--
-- A session its owner cannot see shows no backend_type (nor xact_start): it is still taken as one
-- that may write, so the refusal naming the grant stands (0072).
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
                                  'logical replication parallel worker'));
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
     ORDER BY a.xact_start, a.pid
     LIMIT 1
$$;
