-- A meter moved to another DMA keeps its alert, which goes on in the new DMA
-- (collector.detection.lifecycle). Its enquiry kept the DMA it was raised in, so a district's list
-- (GET /enquiries?dma=…) missed a leak its alerts showed. The enquiry now moves with its alert,
-- with a note, unless a person has filed it under another DMA since.
CREATE FUNCTION move_enquiry_with_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id, 'detection', format('alert now in DMA %s, was %s', NEW.dma, OLD.dma)
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries SET dma = NEW.dma, updated_at = now()
    WHERE alert_id = NEW.alert_id AND dma IS NOT DISTINCT FROM OLD.dma;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_move_enquiry AFTER UPDATE OF dma ON alerts
    FOR EACH ROW WHEN (OLD.dma IS DISTINCT FROM NEW.dma)
    EXECUTE FUNCTION move_enquiry_with_alert();
