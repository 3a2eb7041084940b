-- An agreement's start and end, a meter's fitting and removal: held to the years 1900 to 9998 in UTC
-- by the database itself, as register-accounts and register-meters hold them (aquami/stored_times.py).
-- PostgreSQL hands a timestamptz out in the session's TimeZone: 0001-01-01T00:00Z is in 1 BC west of
-- UTC, 9999-12-31T23:00Z in the year 10000 east of it, and psycopg cannot load either, so every query
-- meeting such a row failed in such a session. The commands refused those times, but rows stored
-- before they did, and rows other writers (psql, an import tool) insert, were not checked.
--
-- The checks are added NOT VALID, so a database holding such an old row still migrates, and every
-- insert or update from now on is checked. validate_stored_time_bounds() then validates them when no
-- row is outside the years, or names with a WARNING how many are and where to see them (the view
-- stored_times_out_of_bounds): an operator corrects them and calls it again.
ALTER TABLE service_agreements ADD CONSTRAINT service_agreements_within_stored_years CHECK (
    start_at >= '1900-01-01T00:00:00Z' AND start_at < '9999-01-01T00:00:00Z'
    AND (end_at IS NULL OR (end_at >= '1900-01-01T00:00:00Z' AND end_at < '9999-01-01T00:00:00Z'))
) NOT VALID;
ALTER TABLE meter_installations ADD CONSTRAINT meter_installations_within_stored_years CHECK (
    installed_at >= '1900-01-01T00:00:00Z' AND installed_at < '9999-01-01T00:00:00Z'
    AND (removed_at IS NULL OR (removed_at >= '1900-01-01T00:00:00Z' AND removed_at < '9999-01-01T00:00:00Z'))
) NOT VALID;

-- Each stored time outside the years, with its row's key; the time as text in UTC (a timestamptz
-- there is what a session west or east of UTC cannot load).
CREATE VIEW stored_times_out_of_bounds AS
    SELECT 'service_agreements'::text AS table_name, agreement_id AS row_id, c.column_name,
           to_char(c.value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z" BC') AS value_utc
    FROM service_agreements,
         LATERAL (VALUES ('start_at', start_at), ('end_at', end_at)) AS c (column_name, value)
    WHERE c.value < '1900-01-01T00:00:00Z' OR c.value >= '9999-01-01T00:00:00Z'
    UNION ALL
    SELECT 'meter_installations', installation_id, c.column_name,
           to_char(c.value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z" BC')
    FROM meter_installations,
         LATERAL (VALUES ('installed_at', installed_at), ('removed_at', removed_at)) AS c (column_name, value)
    WHERE c.value < '1900-01-01T00:00:00Z' OR c.value >= '9999-01-01T00:00:00Z';

-- true: both checks are validated (PostgreSQL now knows every row holds them); false, with a WARNING
-- naming the rows' counts, while some row is outside the years.
CREATE FUNCTION validate_stored_time_bounds() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    agreements bigint;
    installations bigint;
BEGIN
    SELECT count(DISTINCT row_id) FILTER (WHERE table_name = 'service_agreements'),
           count(DISTINCT row_id) FILTER (WHERE table_name = 'meter_installations')
      INTO agreements, installations
      FROM stored_times_out_of_bounds;
    IF agreements > 0 OR installations > 0 THEN
        RAISE WARNING '% service agreement(s) and % meter installation(s) have a time outside the years 1900 to 9998 in UTC, which a database session west or east of UTC cannot load: see them with SELECT * FROM stored_times_out_of_bounds, correct them, then SELECT validate_stored_time_bounds()',
            agreements, installations;
        RETURN false;
    END IF;
    ALTER TABLE service_agreements VALIDATE CONSTRAINT service_agreements_within_stored_years;
    ALTER TABLE meter_installations VALIDATE CONSTRAINT meter_installations_within_stored_years;
    RETURN true;
END
$$;

SELECT validate_stored_time_bounds();
