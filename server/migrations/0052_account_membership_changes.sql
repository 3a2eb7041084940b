-- A billing system keeps its copy of an account's reads with /billing/reads?changed_since= (the reads
-- written or revised since, and the keys of those removed). Which meters' reads belong to an account
-- is agreement ∩ installation (0010), and a job card or an agreement is often recorded late: a meter
-- exchanged on Monday entered on Tuesday, a move-out dated last week. Such a record moved reads into
-- or out of the account without writing a read, so changed_since said nothing, and the copy kept the
-- old meter's reads after the exchange and lacked the new one's (README told the billing system to
-- pull the accounts again whole, without saying which).
--
-- Each change to an agreement or an installation is logged here as the (account, meter, span) whose
-- membership it may have changed, when it was recorded and under which key; /billing/reads with
-- changed_since then gives the reads of those spans that now count for the account as changed, and
-- the keys of those that no longer do as removed. A row updated with the same service point, meter
-- (or account) logs only the spans between its old and new ends (a move-out's end_at: from it on, not
-- the agreement's whole history); one that changes them logs both rows whole. A span is clipped to
-- the agreement or installation it meets, so an installation with no agreement over it logs nothing.
CREATE TABLE account_membership_changes (
    change_id        bigserial PRIMARY KEY,
    account_id       text NOT NULL,
    service_point_id text NOT NULL,
    meter_id         text NOT NULL,
    from_ts          timestamptz NOT NULL,
    to_ts            timestamptz NOT NULL,  -- 'infinity' while open
    recorded_at      timestamptz NOT NULL DEFAULT now(),  -- its transaction's start, as readings.received_at
    recorded_by      text NOT NULL DEFAULT coalesce(nullif(current_setting('aquami.change_key_name', true), ''),
                                                    current_user),
    recorded_by_key_id text DEFAULT nullif(current_setting('aquami.change_key_id', true), ''),
    CHECK (from_ts < to_ts)
);
COMMENT ON TABLE account_membership_changes IS
    'spans in which a meter may have joined or left an account: written by the triggers on service_agreements and meter_installations';
-- /billing/reads asks, for each read of the account, whether a span of its meter was logged since:
-- by account and meter (an account of 1,000 meters whose agreements were all recorded again took 23 s
-- a page when the log was searched by account alone; 1.3 s with this index)
CREATE INDEX account_membership_changes_account_idx ON account_membership_changes (account_id, meter_id, recorded_at);

-- The spans an update changed, from its old and new rows: whole rows when what they tie together
-- changed, else the spans between the old and the new start, and between the old and the new end.
CREATE FUNCTION changed_spans(same boolean, old_from timestamptz, old_to timestamptz,
                              new_from timestamptz, new_to timestamptz)
    RETURNS TABLE (is_new boolean, from_ts timestamptz, to_ts timestamptz) LANGUAGE sql IMMUTABLE AS $$
    SELECT false, old_from, coalesce(old_to, 'infinity') WHERE NOT same
    UNION ALL SELECT true, new_from, coalesce(new_to, 'infinity') WHERE NOT same
    UNION ALL SELECT true, least(old_from, new_from), greatest(old_from, new_from) WHERE same AND old_from <> new_from
    UNION ALL SELECT true, least(coalesce(old_to, 'infinity'), coalesce(new_to, 'infinity')),
                           greatest(coalesce(old_to, 'infinity'), coalesce(new_to, 'infinity'))
              WHERE same AND coalesce(old_to, 'infinity') <> coalesce(new_to, 'infinity')
$$;

-- Logs the spans in which the given installations' meters may have joined or left the accounts whose
-- agreements meet them (spans given as arrays, one element per span: a trigger's transition table
-- cannot be passed on).
CREATE FUNCTION log_installation_spans(points text[], meters text[], froms timestamptz[], tos timestamptz[])
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO account_membership_changes (account_id, service_point_id, meter_id, from_ts, to_ts)
    SELECT sa.account_id, s.point, s.meter, greatest(s.from_ts, sa.start_at), least(s.to_ts, coalesce(sa.end_at, 'infinity'))
    FROM unnest(points, meters, froms, tos) AS s(point, meter, from_ts, to_ts)
    JOIN service_agreements sa ON sa.service_point_id = s.point
     AND sa.start_at < s.to_ts AND coalesce(sa.end_at, 'infinity') > s.from_ts
$$;

-- The same for agreements: the meters installed at their service points within the spans.
CREATE FUNCTION log_agreement_spans(accounts text[], points text[], froms timestamptz[], tos timestamptz[])
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO account_membership_changes (account_id, service_point_id, meter_id, from_ts, to_ts)
    SELECT s.account, s.point, mi.meter_id, greatest(s.from_ts, mi.installed_at),
           least(s.to_ts, coalesce(mi.removed_at, 'infinity'))
    FROM unnest(accounts, points, froms, tos) AS s(account, point, from_ts, to_ts)
    JOIN meter_installations mi ON mi.service_point_id = s.point
     AND mi.installed_at < s.to_ts AND coalesce(mi.removed_at, 'infinity') > s.from_ts
$$;

-- (Each branch reads only the transition tables its event has: plpgsql plans a statement when it runs.)
CREATE FUNCTION log_installation_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM log_installation_spans(array_agg(service_point_id), array_agg(meter_id), array_agg(installed_at),
                                       array_agg(coalesce(removed_at, 'infinity'))) FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM log_installation_spans(array_agg(service_point_id), array_agg(meter_id), array_agg(installed_at),
                                       array_agg(coalesce(removed_at, 'infinity'))) FROM old_rows;
    ELSE
        PERFORM log_installation_spans(
            array_agg(CASE WHEN s.is_new THEN n.service_point_id ELSE o.service_point_id END),
            array_agg(CASE WHEN s.is_new THEN n.meter_id ELSE o.meter_id END), array_agg(s.from_ts), array_agg(s.to_ts))
        FROM old_rows o JOIN new_rows n USING (installation_id)
        CROSS JOIN LATERAL changed_spans(o.service_point_id = n.service_point_id AND o.meter_id = n.meter_id,
                                         o.installed_at, o.removed_at, n.installed_at, n.removed_at) s;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION log_agreement_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM log_agreement_spans(array_agg(account_id), array_agg(service_point_id), array_agg(start_at),
                                    array_agg(coalesce(end_at, 'infinity'))) FROM new_rows;
    ELSE
        PERFORM log_agreement_spans(array_agg(account_id), array_agg(service_point_id), array_agg(start_at),
                                    array_agg(coalesce(end_at, 'infinity'))) FROM old_rows;
    END IF;
    RETURN NULL;
END
$$;

-- An agreement's update, row by row: the accounts file updates its agreements one statement each
-- (in the file's order, a move-out before the move-in), nearly all of them to what they were, and
-- the trigger's WHEN lets those by without a call (a statement trigger on each doubled the time of
-- recording 50,000 agreements).
CREATE FUNCTION log_agreement_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM log_agreement_spans(array_agg(CASE WHEN s.is_new THEN NEW.account_id ELSE OLD.account_id END),
                                array_agg(CASE WHEN s.is_new THEN NEW.service_point_id ELSE OLD.service_point_id END),
                                array_agg(s.from_ts), array_agg(s.to_ts))
    FROM changed_spans(OLD.account_id = NEW.account_id AND OLD.service_point_id = NEW.service_point_id,
                       OLD.start_at, OLD.end_at, NEW.start_at, NEW.end_at) s;
    RETURN NULL;
END
$$;

CREATE TRIGGER installations_log_membership_insert AFTER INSERT ON meter_installations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION log_installation_membership();
CREATE TRIGGER installations_log_membership_update AFTER UPDATE ON meter_installations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION log_installation_membership();
CREATE TRIGGER installations_log_membership_delete AFTER DELETE ON meter_installations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION log_installation_membership();
CREATE TRIGGER agreements_log_membership_insert AFTER INSERT ON service_agreements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION log_agreement_membership();
CREATE TRIGGER agreements_log_membership_update AFTER UPDATE ON service_agreements FOR EACH ROW
    WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id OR OLD.service_point_id IS DISTINCT FROM NEW.service_point_id
          OR OLD.start_at IS DISTINCT FROM NEW.start_at OR OLD.end_at IS DISTINCT FROM NEW.end_at)
    EXECUTE FUNCTION log_agreement_update();
CREATE TRIGGER agreements_log_membership_delete AFTER DELETE ON service_agreements
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION log_agreement_membership();
