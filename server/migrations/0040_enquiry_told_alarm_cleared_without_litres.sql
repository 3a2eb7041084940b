-- An alert whose kind is no water flowing (a meter's tamper, dry, low_battery or error alarm; a
-- stuck register) told its enquiry on resolving that "the flow stopped (N L lost in all)": the
-- litres were the household's ordinary use while the alarm was on (a tamper alarm of 8 hours,
-- "23 L lost"), and nothing had flowed or stopped. Migration 0031 already keeps their rate out of
-- the subject (alert_enquiry_rule(kind).shows_rate); the note now follows the same rule: a meter's
-- alarm "cleared", a stuck register "no longer seen", a meter taken out without litres. The flow
-- kinds' notes are those of migration 0034.
CREATE OR REPLACE FUNCTION note_alert_change_on_enquiry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    taken_out boolean := NEW.status = 'resolved' AND NEW.meter_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM meter_installations WHERE meter_id = NEW.meter_id)
        AND NOT EXISTS (SELECT 1 FROM meter_installations
                        WHERE meter_id = NEW.meter_id AND (removed_at IS NULL OR removed_at > NEW.ended_at));
    flow boolean := (alert_enquiry_rule(NEW.kind)).shows_rate;
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id,
           CASE WHEN NEW.status = 'dismissed' THEN NEW.dismissed_by ELSE 'detection' END,
           CASE
               WHEN taken_out AND flow THEN format('alert resolved: meter %s taken out (%s L lost until then); '
                                                   'a leak behind it would go on through its replacement',
                                                   NEW.meter_id, round(NEW.volume_l::numeric))
               WHEN taken_out THEN format('alert resolved: meter %s taken out', NEW.meter_id)
               WHEN NEW.status = 'resolved' AND flow THEN format('alert resolved: the flow stopped (%s L lost in all)',
                                                                 round(NEW.volume_l::numeric))
               WHEN NEW.status = 'resolved' AND NEW.source = 'meter' THEN 'alert resolved: alarm cleared'
               WHEN NEW.status = 'resolved' THEN 'alert resolved: no longer seen'
               WHEN NEW.status = 'dismissed' THEN 'alert dismissed: ' || NEW.dismiss_reason
               ELSE 'alert ' || NEW.status
           END
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries SET updated_at = now() WHERE alert_id = NEW.alert_id;
    RETURN NULL;
END
$$;
