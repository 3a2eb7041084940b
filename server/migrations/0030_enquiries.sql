-- Customer care's enquiries: what a customer, a member of staff or the detectors raise, and what
-- happened to it. This is the record later customer-care work builds on (jobs grouping enquiries,
-- case managers, contractors, escalation, feedback, trend reports); here it holds what those need
-- to refer to, and the enquiries detection raises by itself.
--
-- An alert (collector migration 0050) raises its enquiry in the same transaction, by trigger, so a
-- detection run can never store an alert that customer care does not see, nor raise one twice: an
-- alert has at most one enquiry (alert_id is unique), and its later changes (resolved, dismissed)
-- are written as updates to that enquiry.
CREATE TABLE enquiries (
    enquiry_id       bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('enquiry', 'complaint', 'service_request')),
    category         text NOT NULL,
    source           text NOT NULL CHECK (source IN ('customer', 'staff', 'detection')),
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'in_progress', 'escalated', 'closed')),
    priority         text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    subject          text NOT NULL,
    account_id       text REFERENCES accounts,
    service_point_id text REFERENCES service_points,
    meter_id         text,
    dma              text,
    alert_id         text UNIQUE REFERENCES alerts,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX enquiries_open_idx ON enquiries (status, priority, opened_at DESC) WHERE status <> 'closed';
CREATE INDEX enquiries_account_idx ON enquiries (account_id, opened_at DESC);
CREATE INDEX enquiries_dma_idx ON enquiries (dma, category, opened_at DESC);

-- What happened, in order: who (a person's name, or 'detection'), when, and a note.
CREATE TABLE enquiry_updates (
    update_id  bigserial PRIMARY KEY,
    enquiry_id bigint NOT NULL REFERENCES enquiries,
    at         timestamptz NOT NULL DEFAULT now(),
    by         text NOT NULL,
    note       text NOT NULL
);
CREATE INDEX enquiry_updates_enquiry_idx ON enquiry_updates (enquiry_id, at);

-- How each kind of alert becomes work: category (what customer care files it under), priority.
-- A burst floods a street now; a stuck register costs revenue slowly.
CREATE TABLE alert_enquiry_rules (
    alert_kind text PRIMARY KEY,
    category   text NOT NULL,
    priority   text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    title      text NOT NULL
);
INSERT INTO alert_enquiry_rules VALUES
    ('dma_burst',    'main burst',         'urgent', 'Suspected main burst in district'),
    ('burst',        'customer burst',     'urgent', 'Suspected burst behind meter'),
    ('leak',         'customer leak',      'high',   'Continuous flow (leak) at meter'),
    ('reverse_flow', 'meter fault',        'normal', 'Reverse flow through meter'),
    ('tamper',       'meter tamper',       'normal', 'Tamper alarm from meter'),
    ('stuck',        'meter fault',        'low',    'Register not advancing at meter'),
    ('dry',          'meter fault',        'low',    'Meter reports an empty pipe'),
    ('low_battery',  'meter maintenance',  'low',    'Low battery at meter'),
    ('meter_error',  'meter fault',        'normal', 'Meter reports an error');

CREATE FUNCTION raise_enquiry_for_alert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rule alert_enquiry_rules%ROWTYPE;
    point text;
    account text;
BEGIN
    SELECT * INTO rule FROM alert_enquiry_rules WHERE alert_kind = NEW.kind;
    IF NOT FOUND THEN
        rule := ROW(NEW.kind, 'other alert', 'normal', 'Alert ' || NEW.kind);
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
                || CASE WHEN NEW.kind IN ('leak', 'burst', 'dma_burst', 'reverse_flow')
                        THEN format('%s L/h ', round(NEW.rate_l_h::numeric, 1)) ELSE '' END
                || 'since ' || to_char(NEW.start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
            account, point, NEW.meter_id, NEW.dma, NEW.alert_id, now(), now());
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    VALUES (currval(pg_get_serial_sequence('enquiries', 'enquiry_id')), 'detection',
            format('raised by alert %s (%s, confidence %s)', NEW.alert_id, NEW.source, round(NEW.confidence::numeric, 2)));
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_raise_enquiry AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION raise_enquiry_for_alert();

-- An alert that ends or is dismissed tells its enquiry; the enquiry stays for a person to close,
-- since "the flow stopped" may mean the customer fixed the leak or the meter stopped counting.
CREATE FUNCTION note_alert_change_on_enquiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO enquiry_updates (enquiry_id, by, note)
    SELECT e.enquiry_id,
           CASE WHEN NEW.status = 'dismissed' THEN NEW.dismissed_by ELSE 'detection' END,
           CASE NEW.status
               WHEN 'resolved' THEN format('alert resolved: the flow stopped (%s L lost in all)',
                                           round(NEW.volume_l::numeric))
               WHEN 'dismissed' THEN 'alert dismissed: ' || NEW.dismiss_reason
               ELSE 'alert ' || NEW.status
           END
    FROM enquiries e WHERE e.alert_id = NEW.alert_id;
    UPDATE enquiries SET updated_at = now() WHERE alert_id = NEW.alert_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_note_on_enquiry AFTER UPDATE OF status ON alerts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('resolved', 'dismissed'))
    EXECUTE FUNCTION note_alert_change_on_enquiry();
