-- Migration 0039 takes a dismissal by 'detection' whose reason reads "the same episode as alert …"
-- for a fold and closes the alert's enquiry as that alert's duplicate. A key named 'detection'
-- (server.auth now refuses the system's names, but one created before may exist) dismissing an
-- urgent burst with such a reason closed its enquiry as "a duplicate of enquiry (none) (alert
-- NO-SUCH-ALERT)". A fold always names an alert stored before it (save_changes inserts the opened
-- alerts first), so an enquiry is now closed as a duplicate only of an alert that exists; any other
-- dismissal is only written on the enquiry (alerts_note_on_enquiry), which a person then works.
CREATE OR REPLACE FUNCTION close_enquiry_of_folded_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text := substr(NEW.dismiss_reason, length('the same episode as alert ') + 1);
    other bigint := (SELECT enquiry_id FROM enquiries WHERE alert_id = kept);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = kept) THEN
        RETURN NULL;
    END IF;
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
