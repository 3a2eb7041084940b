-- A meter's own leak or burst alarm with no flow reading beside it is stored with rate 0
-- (collector.detection.alarms): the meter said "leak", not how much. Its enquiry's subject read
-- "Continuous flow (leak) at meter M1: 0.0 L/h since …", which a care agent reads as "no leak".
-- The subject now quotes a rate only when one was measured or estimated.
CREATE OR REPLACE FUNCTION alert_enquiry_subject(rule alert_enquiry_rules, alert alerts) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT rule.title || ' ' || coalesce(alert.meter_id, alert.dma) || ': '
        || CASE WHEN rule.shows_rate AND NOT (alert.source = 'meter' AND alert.rate_l_h = 0)
                THEN format('%s L/h ', round(alert.rate_l_h::numeric, 1)) ELSE '' END
        || 'since ' || to_char(alert.start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
$$;
