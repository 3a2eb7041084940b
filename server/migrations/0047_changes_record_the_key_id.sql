-- A change was recorded under the key's name alone (a reading's quality_by and its history's
-- superseded_by, an alert's dismissed_by, an enquiry update's by), and two keys may carry one name:
-- rotating a key makes a new one for the same person. After a leak, the leaked key's corrections
-- could not be told from the rightful key's. Each change now records the key's id beside its name;
-- rows from before, and the system's own changes (ingest, VEE, detection), have none (NULL).
ALTER TABLE readings ADD COLUMN quality_by_key_id text;
ALTER TABLE reading_history ADD COLUMN quality_by_key_id text, ADD COLUMN superseded_by_key_id text;
ALTER TABLE alerts ADD COLUMN dismissed_by_key_id text;
ALTER TABLE enquiry_updates ADD COLUMN by_key_id text;

-- collector migration 0055's trigger, with the key ids: the replaced version's, and the new one's as
-- who replaced it; a change of key alone (another key of the same name, the same value) is a change.
CREATE OR REPLACE FUNCTION readings_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change_by text := nullif(current_setting('aquami.change_by', true), '');
    change_reason text := nullif(current_setting('aquami.change_reason', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_by_key_id, quality_reason,
                                     superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_by_key_id, OLD.quality_reason, coalesce(change_by, current_user),
                coalesce(change_reason, 'deleted'), 'deleted');
        RETURN OLD;
    END IF;
    IF (OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality, OLD.quality_by,
        OLD.quality_by_key_id, OLD.quality_reason)
       IS DISTINCT FROM
       (NEW.volume_m3, NEW.flow_m3h, NEW.reverse_volume_m3, NEW.alarms, NEW.quality, NEW.quality_by,
        NEW.quality_by_key_id, NEW.quality_reason)
    THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_by_key_id, quality_reason,
                                     superseded_by, superseded_by_key_id, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_by_key_id, OLD.quality_reason, coalesce(NEW.quality_by, change_by),
                NEW.quality_by_key_id, coalesce(NEW.quality_reason, change_reason), NEW.quality);
    END IF;
    RETURN NEW;
END
$$;

-- An enquiry update written by a trigger in a key's transaction (an alert's dismissal closing its
-- enquiry) under that key's name takes its id: the server names the key for the transaction
-- (set_config('aquami.change_key_id' / 'aquami.change_key_name', ..., true)). An update under
-- another name in the same transaction (detection's) is left without one.
CREATE FUNCTION enquiry_update_takes_the_key_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.by_key_id IS NULL AND NEW."by" = current_setting('aquami.change_key_name', true) THEN
        NEW.by_key_id := nullif(current_setting('aquami.change_key_id', true), '');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER enquiry_update_takes_the_key_id BEFORE INSERT ON enquiry_updates
    FOR EACH ROW EXECUTE FUNCTION enquiry_update_takes_the_key_id();
