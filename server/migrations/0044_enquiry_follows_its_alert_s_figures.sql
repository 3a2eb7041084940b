-- A later detection run revises an open alert's figures as it sees more of the episode: its rate
-- (a shop's burst raised at 302.8 L/h measured at 197.5 L/h four hours on) and its estimated start.
-- Only a change of kind reached the enquiry (0032): its subject went on quoting the rate and start
-- it was raised with ("302.8 L/h since 10:00"), and care read a stale rate. The subject now follows
-- the alert's figures whenever they change (unless a person has refiled the enquiry: its category no
-- longer the alert kind's, as under 0032), and a material change is written on the enquiry, saying
-- what the figures are now and what care was last told ("later reads revise the alert: rate 197.5
-- L/h, was 302.8 L/h"), by 'detection'. Material is measured against what care was last told (when
-- raised, or in the last such note), not against the previous run, so a slow drift adds up to a
-- note and a figure swinging to and fro under the bar never writes one:
--   * a rate (of the kinds whose enquiries quote one, 0031) that differs by at least 20% of the rate
--     told and at least 1 L/h: a leak's rate follows the pressure by up to 10% between night and day
--     (collector.detection.leak.floor_held's tolerance), so hourly runs over one leak stay inside
--     20%; and a 1-litre register read hourly measures rates in steps of 1 L/h, so a 2 L/h leak read
--     as 3 L/h is one step, not a leak half again as large;
--   * a start that moves by two hours or more: the detectors date an episode on the reads' grid and
--     revise it by an interval as its edges fill in (the shop's burst: 10:00, then 09:47, 09:41,
--     09:40), and one interval either way is no news to care.
-- A silent refresh of the subject leaves updated_at alone: that says when something care should
-- look at happened. Enquiries being worked whose subject is already stale are brought up to date
-- once, here, measured against the figures their subject quotes.
ALTER TABLE enquiries ADD COLUMN told_rate_l_h double precision, ADD COLUMN told_start timestamptz;
COMMENT ON COLUMN enquiries.told_rate_l_h IS 'its alert''s rate as care was last told it (raised, or the last note revising it)';
COMMENT ON COLUMN enquiries.told_start IS 'its alert''s start as care was last told it (raised, or the last note revising it)';

-- What care is told of the alert's figures against those it was told before, or NULL when no change
-- is material: each figure that reads differently, the material one among them.
CREATE FUNCTION alert_figures_revised(rule alert_enquiry_rules, alert alerts, told_rate double precision,
                                      told_start timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    WITH shown AS (
        SELECT rule.shows_rate AND NOT (alert.source = 'meter' AND alert.rate_l_h = 0) AS now_measured,
               rule.shows_rate AND NOT (alert.source = 'meter' AND told_rate = 0) AS was_measured,
               rule.shows_rate AND abs(alert.rate_l_h - told_rate) >= greatest(0.2 * told_rate, 1.0) AS rate_moved,
               abs(extract(epoch FROM alert.start - told_start)) >= 7200 AS start_moved
    )
    SELECT CASE WHEN rate_moved OR start_moved THEN
        'later reads revise the alert: ' || concat_ws('; ',
            CASE WHEN rule.shows_rate AND round(alert.rate_l_h::numeric, 1) <> round(told_rate::numeric, 1) THEN
                format('rate %s, was %s',
                       CASE WHEN now_measured THEN format('%s L/h', round(alert.rate_l_h::numeric, 1)) ELSE 'not measured' END,
                       CASE WHEN was_measured THEN format('%s L/h', round(told_rate::numeric, 1)) ELSE 'not measured' END)
            END,
            CASE WHEN date_trunc('minute', alert.start) <> date_trunc('minute', told_start) THEN
                format('since %s, was %s', to_char(alert.start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                       to_char(told_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'))
            END)
    END
    FROM shown
$$;

-- The alert's enquiry follows its figures: the subject always (unless a person refiled it), a note
-- and what care was told when the change is material.
CREATE FUNCTION revise_enquiry_figures(alert alerts) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rule alert_enquiry_rules := alert_enquiry_rule(alert.kind);
    e enquiries;
    news text;
BEGIN
    SELECT * INTO e FROM enquiries WHERE alert_id = alert.alert_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    news := alert_figures_revised(rule, alert, coalesce(e.told_rate_l_h, alert.rate_l_h),
                                  coalesce(e.told_start, alert.start));
    IF news IS NOT NULL THEN
        INSERT INTO enquiry_updates (enquiry_id, by, note) VALUES (e.enquiry_id, 'detection', news);
    END IF;
    UPDATE enquiries
    SET subject = CASE WHEN category = rule.category THEN alert_enquiry_subject(rule, alert) ELSE subject END,
        told_rate_l_h = CASE WHEN news IS NULL THEN coalesce(told_rate_l_h, alert.rate_l_h) ELSE alert.rate_l_h END,
        told_start = CASE WHEN news IS NULL THEN coalesce(told_start, alert.start) ELSE alert.start END,
        updated_at = CASE WHEN news IS NULL THEN updated_at ELSE now() END
    WHERE enquiry_id = e.enquiry_id
      AND (news IS NOT NULL OR told_rate_l_h IS NULL OR told_start IS NULL
           OR (category = rule.category AND subject IS DISTINCT FROM alert_enquiry_subject(rule, alert)));
END
$$;

-- An alert whose kind changed is refiled by alerts_refile_enquiry, whose note quotes the new kind's
-- subject with the new figures: that is what care was told.
CREATE FUNCTION revise_enquiry_with_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.kind IS DISTINCT FROM NEW.kind THEN
        UPDATE enquiries SET told_rate_l_h = NEW.rate_l_h, told_start = NEW.start WHERE alert_id = NEW.alert_id;
    ELSE
        PERFORM revise_enquiry_figures(NEW);
    END IF;
    RETURN NULL;
END
$$;

-- Named to fire before alerts_note_on_enquiry and alerts_reopen_enquiry (triggers of one event fire
-- in name order): a run that revises an alert's figures as it resolves it tells the revision first.
CREATE TRIGGER alerts_figures_on_enquiry AFTER UPDATE OF rate_l_h, start, kind ON alerts
    FOR EACH ROW WHEN (OLD.rate_l_h IS DISTINCT FROM NEW.rate_l_h OR OLD.start IS DISTINCT FROM NEW.start
                       OR OLD.kind IS DISTINCT FROM NEW.kind)
    EXECUTE FUNCTION revise_enquiry_with_alert();

-- 0032's raising, which now records the figures care is told.
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
                           alert_id, opened_at, updated_at, told_rate_l_h, told_start)
    VALUES ('service_request', rule.category, 'detection', rule.priority, alert_enquiry_subject(rule, NEW),
            account, point, NEW.meter_id, NEW.dma, NEW.alert_id, now(), now(), NEW.rate_l_h, NEW.start);
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    VALUES (currval(pg_get_serial_sequence('enquiries', 'enquiry_id')), 'detection',
            format('raised by alert %s (%s, confidence %s)', NEW.alert_id, NEW.source, round(NEW.confidence::numeric, 2)));
    RETURN NULL;
END
$$;

-- The enquiries raised before: told what their subject quotes (the alert's own figures where it
-- quotes none), and those being worked brought up to date as any later run would.
UPDATE enquiries e
SET told_rate_l_h = coalesce(substring(e.subject FROM ': ([0-9]+\.[0-9]) L/h since ')::double precision, a.rate_l_h),
    told_start = coalesce((substring(e.subject FROM 'since ([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}) UTC$')
                           || '+00')::timestamptz, a.start)
FROM alerts a WHERE a.alert_id = e.alert_id;
SELECT revise_enquiry_figures(a) FROM alerts a JOIN enquiries e USING (alert_id) WHERE e.status <> 'closed';
