-- A walk through the care desk's list (server.care.desk) lists on its later pages the enquiries
-- changed since it began. It began at the start of the oldest transaction still open, read from
-- pg_stat_activity, because a change's updated_at is its transaction's start, and a transaction open
-- when the first page read the list may commit a change later, dated before the walk. But a role sees
-- the transactions of other roles in pg_stat_activity only as superuser or pg_read_all_stats: a server
-- on its own role, beside the collector's, saw none of detection's, and began at its own now(), so an
-- enquiry detection raised to urgent in a run open at the first page was on no page.
--
-- Each enquiry now records the transaction that last wrote it (changed_xact: its id, as
-- pg_current_xact_id gives it, 64 bits, never wrapping). A walk begins at the oldest transaction its
-- first page could not see (the xmin of pg_current_snapshot(), which any role may ask): every change
-- that page did not see was written by a transaction at or after it, including one that had written
-- nothing yet (its id is given when it first writes, after every running one's). NULL: written before
-- this migration. Set by trigger, so every writer is counted: the API, the pages, detection's triggers.
ALTER TABLE enquiries ADD COLUMN changed_xact xid8;

CREATE FUNCTION enquiry_records_its_writer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xact := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER enquiries_record_their_writer BEFORE INSERT OR UPDATE ON enquiries
    FOR EACH ROW EXECUTE FUNCTION enquiry_records_its_writer();
