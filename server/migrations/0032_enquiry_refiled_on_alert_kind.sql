-- An alert's kind can change once later reads show its episode better: a burst raised on a shop's
-- busy afternoon whose flow turns out continuous, at a leak's rate, becomes a leak. It stays the
-- same alert (collector.detection.engine._bursts_found_to_be_leaks), so it raised one enquiry, filed
-- under the old kind. That enquiry is now refiled under the new kind's category and title, with a
-- note saying what changed. Its priority stays: it may have sent a crew, and a person, not a
-- detector, stands one down. An enquiry a person has refiled (its category no longer the old
-- kind's) keeps its filing and gets only the note.

-- The subject an alert's enquiry carries, in one place for the trigger that raises the enquiry and
-- the one that refiles it.
CREATE FUNCTION alert_enquiry_subject(rule alert_enquiry_rules, alert alerts) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT rule.title || ' ' || coalesce(alert.meter_id, alert.dma) || ': '
        || CASE WHEN rule.shows_rate THEN format('%s L/h ', round(alert.rate_l_h::numeric, 1)) ELSE '' END
        || 'since ' || to_char(alert.start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
$$;

-- An alert kind without a rule is filed as "other alert".
CREATE FUNCTION alert_enquiry_rule(kind text) RETURNS alert_enquiry_rules LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT r FROM alert_enquiry_rules r WHERE r.alert_kind = kind),
        ROW(kind, 'other alert', 'normal', 'Alert ' || kind, false)::alert_enquiry_rules
    )
$$;

CREATE OR REPLACE FUNCTION raise_enquiry_for_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rule alert_enquiry_rules := alert_enquiry_rule(NEW.kind);
    point text;
    account text;
BEGIN
    IF NEW.meter_id IS NOT NULL THEN
        SELECT mi.service_point_id INTO point FROM meter_installations mi
        WHERE mi.meter_id = NEW.meter_id AND mi.installed_at <= NEW.detected_at
          AND (mi.removed_at IS NULL OR mi.removed_at > NEW.detected_at)
        ORDER BY mi.installed_at DESC LIMIT 1;
        SELECT sa.account_id INTO account FROM service_agreements sa
        WHERE sa.service_point_id = point AND sa.start_at <= NEW.detected_at
          AND (sa.end_at IS NULL OR sa.end_at > NEW.detected_at)
        ORDER BY sa.start_at DESC LIMIT 1;
    END IF;
    INSERT INTO enquiries (kind, category, source, priority, subject, account_id, service_point_id, meter_id, dma,
                           alert_id, opened_at, updated_at)
    VALUES ('service_request', rule.category, 'detection', rule.priority, alert_enquiry_subject(rule, NEW),
            account, point, NEW.meter_id, NEW.dma, NEW.alert_id, now(), now());
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    VALUES (currval(pg_get_serial_sequence('enquiries', 'enquiry_id')), 'detection',
            format('raised by alert %s (%s, confidence %s)', NEW.alert_id, NEW.source, round(NEW.confidence::numeric, 2)));
    RETURN NULL;
END
$$;

CREATE FUNCTION refile_enquiry_on_alert_kind() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was alert_enquiry_rules := alert_enquiry_rule(OLD.kind);
    now_is alert_enquiry_rules := alert_enquiry_rule(NEW.kind);
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id, 'detection',
           format('alert is now %s, was %s: later reads showed it better (%s)',
                  NEW.kind, OLD.kind, alert_enquiry_subject(now_is, NEW))
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries
    SET category = CASE WHEN category = was.category THEN now_is.category ELSE category END,
        subject = CASE WHEN category = was.category THEN alert_enquiry_subject(now_is, NEW) ELSE subject END,
        updated_at = now()
    WHERE alert_id = NEW.alert_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_refile_enquiry AFTER UPDATE OF kind ON alerts
    FOR EACH ROW WHEN (OLD.kind IS DISTINCT FROM NEW.kind)
    EXECUTE FUNCTION refile_enquiry_on_alert_kind();
