-- Audit: every change to a stored reading keeps the version it replaces, with who, when and why
-- (taken from the new version's quality_by / quality_reason). A trigger, so no code path can edit a
-- reading without leaving its history; ingest only inserts, so the COPY path pays nothing.
CREATE TABLE reading_history (
    id                 bigserial PRIMARY KEY,
    meter_id           text NOT NULL,
    ts                 timestamptz NOT NULL,
    volume_m3          numeric NOT NULL,
    flow_m3h           double precision,
    reverse_volume_m3  numeric,
    alarms             text[] NOT NULL,
    quality            text NOT NULL,
    quality_by         text,
    quality_reason     text,
    superseded_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    superseded_by      text,              -- who made the change (a person, or a VEE rule)
    superseded_reason  text,
    superseded_quality text NOT NULL      -- the quality of the new version, or 'deleted'
);
CREATE INDEX reading_history_key_idx ON reading_history (meter_id, ts, id);

CREATE FUNCTION readings_keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_reason, superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_reason, current_user, 'deleted', 'deleted');
        RETURN OLD;
    END IF;
    IF (OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality, OLD.quality_by, OLD.quality_reason)
       IS DISTINCT FROM
       (NEW.volume_m3, NEW.flow_m3h, NEW.reverse_volume_m3, NEW.alarms, NEW.quality, NEW.quality_by, NEW.quality_reason)
    THEN
        INSERT INTO reading_history (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality,
                                     quality_by, quality_reason, superseded_by, superseded_reason, superseded_quality)
        VALUES (OLD.meter_id, OLD.ts, OLD.volume_m3, OLD.flow_m3h, OLD.reverse_volume_m3, OLD.alarms, OLD.quality,
                OLD.quality_by, OLD.quality_reason, NEW.quality_by, NEW.quality_reason, NEW.quality);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER readings_keep_history BEFORE UPDATE OR DELETE ON readings
    FOR EACH ROW EXECUTE FUNCTION readings_keep_history();
