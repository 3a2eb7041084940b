-- An alert on a meter meterization has taken out resolves at the removal: the detectors would never
-- see its flow stop (collector.detection.lifecycle). Its enquiry is told so, not that "the flow
-- stopped": a leak behind the meter goes on through its replacement, whose own alert follows.
CREATE OR REPLACE FUNCTION note_alert_change_on_enquiry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    taken_out boolean := NEW.status = 'resolved' AND NEW.meter_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM meter_installations WHERE meter_id = NEW.meter_id)
        AND NOT EXISTS (SELECT 1 FROM meter_installations
                        WHERE meter_id = NEW.meter_id AND (removed_at IS NULL OR removed_at > NEW.ended_at));
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id,
           CASE WHEN NEW.status = 'dismissed' THEN NEW.dismissed_by ELSE 'detection' END,
           CASE
               WHEN taken_out THEN format('alert resolved: meter %s taken out (%s L lost until then); '
                                          'a leak behind it would go on through its replacement',
                                          NEW.meter_id, round(NEW.volume_l::numeric))
               WHEN NEW.status = 'resolved' THEN format('alert resolved: the flow stopped (%s L lost in all)',
                                                        round(NEW.volume_l::numeric))
               WHEN NEW.status = 'dismissed' THEN 'alert dismissed: ' || NEW.dismiss_reason
               ELSE 'alert ' || NEW.status
           END
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries SET updated_at = now() WHERE alert_id = NEW.alert_id;
    RETURN NULL;
END
$$;
