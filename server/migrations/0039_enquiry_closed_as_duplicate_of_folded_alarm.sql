-- A meter's leak or burst alarm raised before a detector found the same flow under another kind
-- (the meter's "leak" bit beside a 600 L/h burst; a shop's burst later found to be a leak) is
-- folded into the detector's alert: the lifecycle closes it as dismissed by 'detection', the reason
-- naming the detector's alert (collector.detection.lifecycle.FOLDED_BY, FOLDED_REASON). Its enquiry
-- was a second one about the same water (two open "customer leak" enquiries for the shop's leak).
-- It is now closed as a duplicate, naming the detector's alert's enquiry, unless a person is
-- already working it (in progress, escalated): that one keeps its status and gets the note, so no
-- crew's ticket disappears under them.
CREATE FUNCTION close_enquiry_of_folded_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text := substr(NEW.dismiss_reason, length('the same episode as alert ') + 1);
    other bigint := (SELECT enquiry_id FROM enquiries WHERE alert_id = kept);
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id, 'detection',
           format('a duplicate of enquiry %s (alert %s), about the same flow%s', coalesce(other::text, '(none)'), kept,
                  CASE WHEN e.status = 'open' THEN '; enquiry closed' ELSE '' END)
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries SET status = 'closed', closed_at = now(), updated_at = now()
    WHERE alert_id = NEW.alert_id AND status = 'open';
    RETURN NULL;
END
$$;

-- Named after alerts_note_on_enquiry (triggers of one event fire in name order): the enquiry is
-- told of the dismissal first, then closed.
CREATE TRIGGER alerts_zclose_folded_enquiry AFTER UPDATE OF status ON alerts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'dismissed'
                       AND NEW.dismissed_by = 'detection' AND NEW.dismiss_reason LIKE 'the same episode as alert %')
    EXECUTE FUNCTION close_enquiry_of_folded_alert();
