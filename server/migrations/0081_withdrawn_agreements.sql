-- A service agreement recorded in error (for the wrong service point, or the wrong account) could be
-- corrected in its end (and, by register-accounts, its account and start) but not taken back.
-- `aquami server withdraw-agreement` now takes it out of service_agreements and keeps here what it was,
-- who withdrew it, when and why, as 0080 does for installations; 0052's trigger logs its removal as
-- any correction's (the account's billing periods it touched revised). register-accounts refuses a
-- row that records a withdrawn agreement again (same account, service point and start) unless given
-- --reinstate-withdrawn.
CREATE TABLE withdrawn_agreements (
    withdrawal_id       bigserial PRIMARY KEY,
    agreement_id        bigint NOT NULL,  -- the row's id in service_agreements, as it was
    account_id          text NOT NULL,
    service_point_id    text NOT NULL,
    start_at            timestamptz NOT NULL,
    end_at              timestamptz,
    withdrawn_at        timestamptz NOT NULL DEFAULT now(),
    withdrawn_by        text NOT NULL CHECK (withdrawn_by <> ''),
    withdrawn_by_key_id text,
    reason              text NOT NULL CHECK (length(reason) >= 3),
    reinstated_at       timestamptz,  -- recorded again on purpose (register-accounts --reinstate-withdrawn)
    CHECK (reinstated_at IS NULL OR reinstated_at >= withdrawn_at)
);
COMMENT ON TABLE withdrawn_agreements IS
    'service agreements recorded in error and withdrawn (aquami server withdraw-agreement): what they were, who, when, why';
CREATE INDEX withdrawn_agreements_point_idx ON withdrawn_agreements (service_point_id, start_at);
