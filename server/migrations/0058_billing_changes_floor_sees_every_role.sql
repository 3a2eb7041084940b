-- A billing pull's next_changed_since (server.billing.repository.changes_floor) is when its first
-- page read the database, or the start of the oldest transaction still open then if earlier: a
-- read's received_at is its transaction's start, and a transaction open during the pull may commit
-- reads after it, dated before it. The server read that start from pg_stat_activity itself, where a
-- role sees the transactions of other roles only as superuser or with pg_read_all_stats: a server on
-- its own role, beside the collector's, saw none of ingest's or VEE's, handed out its own now(), and
-- the reads such a transaction committed after the pull were in no later pull.
--
-- This function asks on behalf of whoever runs the migrations (the database's owner, who sees every
-- session): the server's role needs only to call it, not pg_read_all_stats, which would also show it
-- every session's query text. An owner that cannot see a session in this database refuses, naming
-- the grant, rather than hand out a floor past a transaction it cannot see.
CREATE FUNCTION billing_changes_floor() RETURNS timestamptz
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
        RAISE EXCEPTION 'billing''s changes_floor cannot see when the transactions of role(s) % began: GRANT pg_read_all_stats TO %', unseen, quote_ident(current_user::text)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN floor;
END
$$;
