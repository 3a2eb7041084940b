-- Server migration 0082's trigger takes the consumption refreshes' turn (the transaction lock 'cons',
-- collector migration 0061) after its statement has written its installations, and only where a meter
-- has a read before an instant. A job card holding the turn (its removal recorded, a meter read) that
-- came to insert an installation overlapping one another job card had inserted and not committed waited
-- on it at the exclusion constraints of 0010, while the other's trigger waited for the turn: a deadlock,
-- and PostgreSQL rolled one back with "deadlock detected" instead of the overlap register-meters names.
-- Now every statement on meter_installations takes the turn before it writes a row (register-meters,
-- withdraw-installation, and any other writer alike), so a writer of installations waits for the turn
-- holding none of them: the one queued after waits for the other to commit, then is told the overlap.
CREATE FUNCTION installations_take_their_turn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons', as refresh_consumption: held until the transaction ends
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION installations_take_their_turn() IS
    'the consumption refreshes'' turn, taken before a statement writes an installation (no job card holds one while it waits for it)';

CREATE TRIGGER installations_take_their_turn BEFORE INSERT OR UPDATE OR DELETE ON meter_installations
    FOR EACH STATEMENT EXECUTE FUNCTION installations_take_their_turn();
