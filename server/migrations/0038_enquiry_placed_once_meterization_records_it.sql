-- An alert on a meter meterization had not yet recorded as fitted anywhere (the job card still on
-- its way) raised an enquiry with no service point and no account, and nothing filled them in once
-- the installation and the agreement were recorded: the account's enquiries (GET
-- /enquiries?account=…) never showed it. Whenever installations or agreements are recorded, such
-- enquiries take the service point the meter was fitted at, and the account supplied there, when
-- their alert was detected (as the trigger that raises them would have), with a note.
CREATE FUNCTION place_unplaced_enquiries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH placed AS (
        UPDATE enquiries e SET service_point_id = mi.service_point_id, updated_at = now()
        FROM alerts a, meter_installations mi
        WHERE e.service_point_id IS NULL AND e.meter_id IS NOT NULL AND a.alert_id = e.alert_id
          AND mi.meter_id = e.meter_id AND mi.installed_at <= a.detected_at
          AND (mi.removed_at IS NULL OR mi.removed_at > a.detected_at)
        RETURNING e.enquiry_id, e.service_point_id
    )
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT enquiry_id, 'meterization', format('meter recorded as fitted at service point %s', service_point_id)
    FROM placed;
    WITH billed AS (
        UPDATE enquiries e SET account_id = sa.account_id, updated_at = now()
        FROM alerts a, service_agreements sa
        WHERE e.account_id IS NULL AND e.service_point_id IS NOT NULL AND a.alert_id = e.alert_id
          AND sa.service_point_id = e.service_point_id AND sa.start_at <= a.detected_at
          AND (sa.end_at IS NULL OR sa.end_at > a.detected_at)
        RETURNING e.enquiry_id, e.account_id
    )
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT enquiry_id, 'meterization', format('service point supplied to account %s', account_id)
    FROM billed;
    RETURN NULL;
END
$$;

-- once per statement: a meters file of 100,000 installations places the enquiries in one pass
CREATE TRIGGER meter_installations_place_enquiries AFTER INSERT OR UPDATE ON meter_installations
    FOR EACH STATEMENT EXECUTE FUNCTION place_unplaced_enquiries();
CREATE TRIGGER service_agreements_place_enquiries AFTER INSERT OR UPDATE ON service_agreements
    FOR EACH STATEMENT EXECUTE FUNCTION place_unplaced_enquiries();
