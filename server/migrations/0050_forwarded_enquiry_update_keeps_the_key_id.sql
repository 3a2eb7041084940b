-- 0045's forwarding of what is written on a closed duplicate to the enquiry that goes on, which now
-- copies the key's id (0047's by_key_id) with the name: a person's note forwarded had their name and
-- no id, so two keys of one name could not be told apart on the kept enquiry.
CREATE OR REPLACE FUNCTION forward_update_to_kept_enquiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, at, by, by_key_id, note)
    SELECT e.duplicate_of, NEW.at, NEW."by", NEW.by_key_id,
           format('on enquiry %s (alert %s): %s', e.enquiry_id, e.alert_id, NEW.note)
    FROM enquiries e WHERE e.enquiry_id = NEW.enquiry_id AND e.duplicate_of IS NOT NULL;
    IF FOUND THEN
        UPDATE enquiries SET updated_at = now()
        WHERE enquiry_id = (SELECT duplicate_of FROM enquiries WHERE enquiry_id = NEW.enquiry_id);
    END IF;
    RETURN NULL;
END
$$;
