-- A leak that grows to a burst's rate is two alerts: the leak detector's, and a burst on top of it
-- (collector.detection: a burst adding more than the leak itself, or more than 250 L/h, stays a
-- burst). Each raised its own enquiry: a 25 L/h leak at DJ-007, 'high', then, once it opened up by
-- 575 L/h, a second, 'urgent' one for the same meter's water (the detection job run hourly), two
-- pieces of work for one episode of water escaping at one meter.
--
-- A detector's leak or burst alert raised while the enquiry of another detector's leak or burst
-- alert on the same meter, whose episode overlaps it and which no person dismissed, is still being
-- worked (not closed) is now that enquiry's work: its own enquiry is closed as a duplicate, linked
-- to the one that goes on (duplicate_of), and that one is told, with the new alert's subject, and
-- takes the new alert's priority when it is higher and the alert still running (the leak's 'high'
-- becomes 'urgent': a crew must go now). What detection later writes on the duplicate (its alert
-- resolved, revised, running again) is written on the one that goes on too, and an alert running
-- again reopens that one, not its closed duplicate. The alerts stay two: their kinds, rates and
-- volumes are the detectors'. A meter's own alarm about the same flow is folded by the lifecycle
-- already (0039); an enquiry a person has closed is not reopened by this: the new one stays open.
ALTER TABLE enquiries ADD COLUMN duplicate_of bigint REFERENCES enquiries;

CREATE FUNCTION priority_rank(priority text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT array_position(ARRAY['low', 'normal', 'high', 'urgent'], priority)
$$;

CREATE FUNCTION close_enquiry_of_the_same_flow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rule alert_enquiry_rules := alert_enquiry_rule(NEW.kind);
    mine enquiries;
    kept enquiries;
    raised text;
BEGIN
    SELECT * INTO mine FROM enquiries WHERE alert_id = NEW.alert_id;
    SELECT e.* INTO kept FROM enquiries e JOIN alerts a USING (alert_id)
    WHERE a.meter_id = NEW.meter_id AND a.alert_id <> NEW.alert_id AND a.kind IN ('leak', 'burst')
      AND a.source = 'detector' AND a.status <> 'dismissed'
      AND (coalesce(a.ended_at, a.resolved_at) IS NULL OR coalesce(a.ended_at, a.resolved_at) >= NEW.start)
      AND (NEW.ended_at IS NULL OR a.start <= NEW.ended_at)
      AND e.status <> 'closed' AND e.duplicate_of IS NULL
    ORDER BY e.opened_at, e.enquiry_id LIMIT 1;
    IF mine.enquiry_id IS NULL OR kept.enquiry_id IS NULL THEN
        RETURN NULL;
    END IF;
    raised := CASE WHEN NEW.status IN ('open', 'ongoing') AND priority_rank(rule.priority) > priority_rank(kept.priority)
                     THEN rule.priority ELSE kept.priority END;
    INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES
        (mine.enquiry_id, 'detection',
         format('a duplicate of enquiry %s (alert %s), about the same flow at meter %s; enquiry closed',
                kept.enquiry_id, kept.alert_id, NEW.meter_id)),
        (kept.enquiry_id, 'detection',
         format('the same flow is now also alert %s (%s), raised as enquiry %s and closed as this one''s duplicate%s',
                NEW.alert_id, alert_enquiry_subject(rule, NEW), mine.enquiry_id,
                CASE WHEN raised <> kept.priority THEN format('; priority %s → %s', kept.priority, raised) ELSE '' END));
    UPDATE enquiries SET priority = raised, updated_at = now() WHERE enquiry_id = kept.enquiry_id;
    -- linked once its notes are written: what is written on it from now on is forwarded
    UPDATE enquiries SET status = 'closed', closed_at = now(), updated_at = now(), duplicate_of = kept.enquiry_id
    WHERE enquiry_id = mine.enquiry_id;
    RETURN NULL;
END
$$;

-- Named to fire after alerts_raise_enquiry and alerts_resolved_when_raised (name order): the new
-- alert's enquiry exists, and was told of a resolution it was stored with, before it is closed.
CREATE TRIGGER alerts_same_flow_one_enquiry AFTER INSERT ON alerts
    FOR EACH ROW WHEN (NEW.kind IN ('leak', 'burst') AND NEW.meter_id IS NOT NULL AND NEW.source = 'detector')
    EXECUTE FUNCTION close_enquiry_of_the_same_flow();

-- What is written on a duplicate after it was closed is written on the one that goes on, saying whence.
CREATE FUNCTION forward_update_to_kept_enquiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, at, by, note)
    SELECT e.duplicate_of, NEW.at, NEW."by", format('on enquiry %s (alert %s): %s', e.enquiry_id, e.alert_id, NEW.note)
    FROM enquiries e WHERE e.enquiry_id = NEW.enquiry_id AND e.duplicate_of IS NOT NULL;
    IF FOUND THEN
        UPDATE enquiries SET updated_at = now()
        WHERE enquiry_id = (SELECT duplicate_of FROM enquiries WHERE enquiry_id = NEW.enquiry_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER enquiry_updates_forward_to_kept AFTER INSERT ON enquiry_updates
    FOR EACH ROW EXECUTE FUNCTION forward_update_to_kept_enquiry();

-- 0033's reopening, which reopens the enquiry that goes on in place of a closed duplicate.
CREATE OR REPLACE FUNCTION reopen_enquiry_with_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mine enquiries;
    target enquiries;
BEGIN
    SELECT * INTO mine FROM enquiries WHERE alert_id = NEW.alert_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO target FROM enquiries WHERE enquiry_id = coalesce(mine.duplicate_of, mine.enquiry_id);
    UPDATE enquiries
    SET status = CASE WHEN status = 'closed' THEN 'open' ELSE status END,
        closed_at = NULL,
        updated_at = now()
    WHERE enquiry_id = target.enquiry_id;
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    VALUES (mine.enquiry_id, 'detection',
            format('alert %s again: later reads show its flow did not stop%s', NEW.status,
                   CASE WHEN target.status <> 'closed' THEN ''
                        WHEN mine.duplicate_of IS NULL THEN '; enquiry reopened'
                        ELSE format('; enquiry %s reopened', target.enquiry_id) END));
    RETURN NULL;
END
$$;
