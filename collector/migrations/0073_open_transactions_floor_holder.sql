-- open_transactions_floor_holder(): the session whose open transaction is the floor
-- open_transactions_floor() (0072) gives, as its owner sees it: pid, role, application_name,
-- backend_type, state, when its transaction began and for how long (by the database's clock). No
-- row when none but the caller's is open.
--
-- A session left idle in a transaction (a psql left open, a client that crashed mid-transaction)
-- holds the floor back for as long as it lasts: that is right (what it commits may still be dated
-- by its start), but detection re-reads ever more readings as arrived and billing's changed_since
-- pulls send ever more again, and nothing said so. The callers ask this only when the floor lags
-- their clock by more than their setting, to name what holds it in one warning
-- (collector.floor_lag). A second function, not more columns of the floor's: the floor's callers
-- ask it on every run and pull and need only the instant, and its type stays as billing and
-- detection read it. SECURITY DEFINER as the floor is (the callers need no grant, and not
-- pg_read_all_stats); the query's text is not given, which that grant would show.
CREATE FUNCTION open_transactions_floor_holder()
    RETURNS TABLE (pid integer, role text, application_name text, backend_type text, state text,
                   xact_start timestamptz, age interval)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.pid, a.usename::text, a.application_name, a.backend_type, a.state,
           a.xact_start, clock_timestamp() - a.xact_start
      FROM pg_stat_activity a
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
     ORDER BY a.xact_start, a.pid
     LIMIT 1
$$;
