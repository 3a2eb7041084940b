-- A resolved alert can come back: a shop's burst that ended at closing time (its flow fell below
-- half the level that raised it) turns out that night to be a leak that goes on, and the
-- detectors raise the same alert again as a leak still running (collector.detection.lifecycle,
-- "seen again as another kind"). Its enquiry was told "alert resolved"; it is now told the alert
-- is running again, and if a person had closed it on the strength of that, it is open again: a
-- leak must not sit in a closed ticket. An enquiry still being worked keeps its status.
CREATE FUNCTION reopen_enquiry_with_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id, 'detection',
           format('alert %s again: later reads show its flow did not stop%s', NEW.status,
                  CASE WHEN e.status = 'closed' THEN '; enquiry reopened' ELSE '' END)
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries
    SET status = CASE WHEN status = 'closed' THEN 'open' ELSE status END,
        closed_at = NULL,
        updated_at = now()
    WHERE alert_id = NEW.alert_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_reopen_enquiry AFTER UPDATE OF status ON alerts
    FOR EACH ROW WHEN (OLD.status = 'resolved' AND NEW.status IN ('open', 'ongoing'))
    EXECUTE FUNCTION reopen_enquiry_with_alert();
