-- A person's correction that a check refused (a register out of sequence with the meter's reads
-- either side, or a newest read faster than the meter: collector.vee.register_order) is stored when
-- sent again with "out_of_sequence": "confirmed". Only its reason was recorded: nothing said that a
-- person had overridden a check, nor which. The reading now records which check its person
-- overrode (quality_overrode: 'out_of_sequence' or 'faster_than_the_meter'; NULL when none was:
-- confirmed or not, a value the checks take overrides nothing), beside who (quality_by, its key)
-- and when (received_at); its history keeps the replaced version's, and the replacing version's as
-- superseded_overrode beside superseded_by and superseded_at.
ALTER TABLE readings ADD COLUMN quality_overrode text;
ALTER TABLE reading_history ADD COLUMN quality_overrode text, ADD COLUMN superseded_overrode text;

-- server migration 0047's trigger, with the override: kept with the version it belongs to, and a
-- version that is no person's (an actual read replacing an edited estimate: collector.store) carries
-- none, whatever the statement writing it left in the column.
CREATE OR REPLACE FUNCTION readings_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change_by text := nullif(current_setting('aquami.change_by', true), '');
    change_reason text := nullif(current_setting('aquami.change_reason', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_by_key_id, quality_reason, quality_overrode,
                                     superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_by_key_id, OLD.quality_reason, OLD.quality_overrode,
                coalesce(change_by, current_user), coalesce(change_reason, 'deleted'), 'deleted');
        RETURN OLD;
    END IF;
    IF NEW.quality NOT IN ('edited', 'substituted') THEN
        NEW.quality_overrode := NULL;
    END IF;
    IF (OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality, OLD.quality_by,
        OLD.quality_by_key_id, OLD.quality_reason, OLD.quality_overrode)
       IS DISTINCT FROM
       (NEW.volume_m3, NEW.flow_m3h, NEW.reverse_volume_m3, NEW.alarms, NEW.quality, NEW.quality_by,
        NEW.quality_by_key_id, NEW.quality_reason, NEW.quality_overrode)
    THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_by_key_id, quality_reason, quality_overrode,
                                     superseded_by, superseded_by_key_id, superseded_reason, superseded_quality,
                                     superseded_overrode)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_by_key_id, OLD.quality_reason, OLD.quality_overrode,
                coalesce(NEW.quality_by, change_by), NEW.quality_by_key_id, coalesce(NEW.quality_reason, change_reason),
                NEW.quality, NEW.quality_overrode);
    END IF;
    RETURN NEW;
END
$$;
