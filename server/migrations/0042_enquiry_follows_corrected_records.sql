-- An enquiry raised by an alert is linked to the service point the meter was fitted at, and the
-- account supplied there, when its alert was detected, as the records showed at that moment; 0038
-- then filled in only links that were missing. Records corrected afterwards never moved it: a
-- move-out recorded late (the new tenant's agreement from 2026-10-15, the leak detected on
-- 2026-11-01) left the new tenant's leak on the old tenant's account (GET /enquiries?account=NEW
-- showed nothing), and a job card corrected with register-meters left the enquiry at the
-- neighbour's service point. Whenever installations or agreements are written, the enquiries of
-- the meters and service points written are placed again as of their alert's detection, with a
-- note saying what changed and what it was, by 'meterization' (as 0038's notes). An enquiry still
-- being worked (open, in progress, escalated) follows the records, to no place too if they now
-- say the meter was fitted nowhere then; a closed one is only filled in where it had no link (as
-- under 0038): its history is not rewritten. This replaces 0038's triggers, which filled links in
-- over every enquiry on every statement; these look only at what the statement wrote (transition
-- tables, one trigger per event as PostgreSQL requires).
DROP TRIGGER meter_installations_place_enquiries ON meter_installations;
DROP TRIGGER service_agreements_place_enquiries ON service_agreements;
DROP FUNCTION place_unplaced_enquiries();

-- register-accounts writes an agreement a statement: each looks up its service point's enquiries
-- (and register-meters its meters'), not every enquiry.
CREATE INDEX enquiries_meter_idx ON enquiries (meter_id);
CREATE INDEX enquiries_service_point_idx ON enquiries (service_point_id);

CREATE FUNCTION place_enquiries(meters text[], points text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH found AS (
        SELECT e.enquiry_id, e.service_point_id AS was,
               (SELECT mi.service_point_id FROM meter_installations mi
                WHERE mi.meter_id = e.meter_id AND mi.installed_at <= a.detected_at
                  AND (mi.removed_at IS NULL OR mi.removed_at > a.detected_at)
                ORDER BY mi.installed_at DESC LIMIT 1) AS point
        FROM enquiries e JOIN alerts a ON a.alert_id = e.alert_id
        WHERE e.meter_id IN (SELECT unnest(meters)) AND (e.status <> 'closed' OR e.service_point_id IS NULL)
    ), placed AS (
        UPDATE enquiries e SET service_point_id = f.point, updated_at = now()
        FROM found f
        WHERE e.enquiry_id = f.enquiry_id AND f.point IS DISTINCT FROM f.was
          AND (e.status <> 'closed' OR e.service_point_id IS NULL)
        RETURNING e.enquiry_id, f.was, f.point
    )
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT enquiry_id, 'meterization',
           CASE WHEN was IS NULL THEN format('meter recorded as fitted at service point %s', point)
                WHEN point IS NULL THEN format('meter no longer recorded as fitted anywhere when its alert was '
                                               'detected; enquiry taken off service point %s', was)
                ELSE format('meter recorded as fitted at service point %s when its alert was detected; '
                            'enquiry moved from service point %s', point, was)
           END
    FROM placed;

    WITH found AS (
        SELECT e.enquiry_id, e.account_id AS was,
               (SELECT sa.account_id FROM service_agreements sa
                WHERE sa.service_point_id = e.service_point_id AND sa.start_at <= a.detected_at
                  AND (sa.end_at IS NULL OR sa.end_at > a.detected_at)
                ORDER BY sa.start_at DESC LIMIT 1) AS account
        FROM enquiries e JOIN alerts a ON a.alert_id = e.alert_id
        WHERE e.enquiry_id IN (SELECT enquiry_id FROM enquiries WHERE meter_id IN (SELECT unnest(meters))
                               UNION ALL
                               SELECT enquiry_id FROM enquiries WHERE service_point_id IN (SELECT unnest(points)))
          AND (e.status <> 'closed' OR e.account_id IS NULL)
    ), billed AS (
        UPDATE enquiries e SET account_id = f.account, updated_at = now()
        FROM found f
        WHERE e.enquiry_id = f.enquiry_id AND f.account IS DISTINCT FROM f.was
          AND (e.status <> 'closed' OR e.account_id IS NULL)
        RETURNING e.enquiry_id, f.was, f.account
    )
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT enquiry_id, 'meterization',
           CASE WHEN was IS NULL THEN format('service point supplied to account %s', account)
                WHEN account IS NULL THEN format('no account recorded as supplied there when its alert was '
                                                 'detected; enquiry taken off account %s', was)
                ELSE format('service point supplied to account %s when its alert was detected; '
                            'enquiry moved from account %s', account, was)
           END
    FROM billed;
END
$$;

-- The meters and service points a statement wrote, from its transition tables (an INSERT has only
-- new rows, a DELETE only old ones; an UPDATE both: a job card corrected from SP-X to SP-2 concerns
-- the meter, and an agreement moved off a service point concerns that one too). A writer of many
-- statements that belong together (register-accounts: a move-out, then the move-in) sets
-- aquami.place_enquiries_later for its transaction and calls place_enquiries once at its end, so an
-- enquiry is not told of the state between them (server.accounts.register.record_accounts).
CREATE FUNCTION place_enquiries_of_installations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('aquami.place_enquiries_later', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM place_enquiries(ARRAY(SELECT DISTINCT meter_id FROM new_rows), '{}');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM place_enquiries(ARRAY(SELECT DISTINCT meter_id FROM old_rows), '{}');
    ELSE
        PERFORM place_enquiries(ARRAY(SELECT meter_id FROM new_rows UNION SELECT meter_id FROM old_rows), '{}');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION place_enquiries_of_agreements() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('aquami.place_enquiries_later', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM place_enquiries('{}', ARRAY(SELECT DISTINCT service_point_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM place_enquiries('{}', ARRAY(SELECT DISTINCT service_point_id FROM old_rows));
    ELSE
        PERFORM place_enquiries(
            '{}', ARRAY(SELECT service_point_id FROM new_rows UNION SELECT service_point_id FROM old_rows)
        );
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER meter_installations_place_enquiries_on_insert AFTER INSERT ON meter_installations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_installations();
CREATE TRIGGER meter_installations_place_enquiries_on_update AFTER UPDATE ON meter_installations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_installations();
CREATE TRIGGER meter_installations_place_enquiries_on_delete AFTER DELETE ON meter_installations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_installations();
CREATE TRIGGER service_agreements_place_enquiries_on_insert AFTER INSERT ON service_agreements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_agreements();
CREATE TRIGGER service_agreements_place_enquiries_on_update AFTER UPDATE ON service_agreements
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_agreements();
CREATE TRIGGER service_agreements_place_enquiries_on_delete AFTER DELETE ON service_agreements
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION place_enquiries_of_agreements();
