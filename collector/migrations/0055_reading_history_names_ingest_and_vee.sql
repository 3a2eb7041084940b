-- reading_history's who and why came from the new version's quality_by and quality_reason: an
-- actual reading replacing VEE's estimate has none (it is actual), so the estimate's history said
-- no one and nothing; an estimate VEE deleted (a read arrived beside it) said the database role and
-- 'deleted'. The code that makes such a change now says who and why for its transaction
-- (set_config('aquami.change_by' / 'aquami.change_reason', ..., true)), and the trigger takes that
-- where the new version names no one.
CREATE OR REPLACE FUNCTION readings_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change_by text := nullif(current_setting('aquami.change_by', true), '');
    change_reason text := nullif(current_setting('aquami.change_reason', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_reason, superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_reason, coalesce(change_by, current_user),
                coalesce(change_reason, 'deleted'), 'deleted');
        RETURN OLD;
    END IF;
    IF (OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality, OLD.quality_by, OLD.quality_reason)
       IS DISTINCT FROM
       (NEW.volume_m3, NEW.flow_m3h, NEW.reverse_volume_m3, NEW.alarms, NEW.quality, NEW.quality_by, NEW.quality_reason)
    THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_reason, superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_reason, coalesce(NEW.quality_by, change_by),
                coalesce(NEW.quality_reason, change_reason), NEW.quality);
    END IF;
    RETURN NEW;
END
$$;
