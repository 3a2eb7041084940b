-- Which alert kinds' enquiries quote the alert's rate: those whose rate is water flowing (lost, or
-- going back). The trigger of 0030 kept its own list of them in its code; a column of the rules
-- table keeps it beside the kinds' other rules, and tests/server/test_enquiry_rules.py holds it
-- to collector.detection.alerts.FLOW_KINDS.
ALTER TABLE alert_enquiry_rules ADD COLUMN shows_rate boolean NOT NULL DEFAULT false;
UPDATE alert_enquiry_rules SET shows_rate = true WHERE alert_kind IN ('leak', 'burst', 'dma_burst', 'reverse_flow');

CREATE OR REPLACE FUNCTION raise_enquiry_for_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rule alert_enquiry_rules%ROWTYPE;
    point text;
    account text;
BEGIN
    SELECT * INTO rule FROM alert_enquiry_rules WHERE alert_kind = NEW.kind;
    IF NOT FOUND THEN
        rule := ROW(NEW.kind, 'other alert', 'normal', 'Alert ' || NEW.kind, false);
    END IF;
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
    VALUES ('service_request', rule.category, 'detection', rule.priority,
            rule.title || ' ' || coalesce(NEW.meter_id, NEW.dma) || ': '
                || CASE WHEN rule.shows_rate THEN format('%s L/h ', round(NEW.rate_l_h::numeric, 1)) ELSE '' END
                || 'since ' || to_char(NEW.start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
            account, point, NEW.meter_id, NEW.dma, NEW.alert_id, now(), now());
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    VALUES (currval(pg_get_serial_sequence('enquiries', 'enquiry_id')), 'detection',
            format('raised by alert %s (%s, confidence %s)', NEW.alert_id, NEW.source, round(NEW.confidence::numeric, 2)));
    RETURN NULL;
END
$$;
