-- An installation recorded in error (a job card keyed against the wrong service point, or the wrong
-- meter) could be corrected in its dates or registers but not taken back: it billed the wrong
-- customer for ever, or blocked the right installation as an overlap. `aquami server
-- withdraw-installation` now takes it out of meter_installations, and keeps here what it was, who
-- withdrew it, when and why: recorded, never silently deleted. Its removal from meter_installations
-- is logged by 0052's trigger as any correction is (the billing periods it touched revised, their
-- as_of moved; /billing/reads?changed_since= gives its reads as removed), under the withdrawer's
-- name (aquami.change_key_name).
--
-- A withdrawal stands until the clerk reinstates it on purpose: register-meters refuses a row that
-- records a withdrawn installation again (same meter, service point and installation time) unless
-- given --reinstate-withdrawn, which records the row and dates the reinstatement here.
CREATE TABLE withdrawn_installations (
    withdrawal_id       bigserial PRIMARY KEY,
    installation_id     bigint NOT NULL,  -- the row's id in meter_installations, as it was
    service_point_id    text NOT NULL,
    meter_id            text NOT NULL,
    installed_at        timestamptz NOT NULL,
    removed_at          timestamptz,
    initial_register_m3 numeric,
    final_register_m3   numeric,
    withdrawn_at        timestamptz NOT NULL DEFAULT now(),
    withdrawn_by        text NOT NULL CHECK (withdrawn_by <> ''),
    withdrawn_by_key_id text,
    reason              text NOT NULL CHECK (length(reason) >= 3),
    reinstated_at       timestamptz,  -- recorded again on purpose (register-meters --reinstate-withdrawn)
    CHECK (reinstated_at IS NULL OR reinstated_at >= withdrawn_at)
);
COMMENT ON TABLE withdrawn_installations IS
    'installations recorded in error and withdrawn (aquami server withdraw-installation): what they were, who, when, why';
CREATE INDEX withdrawn_installations_meter_idx ON withdrawn_installations (meter_id, installed_at);
