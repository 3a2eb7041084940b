-- A reading whose key (meter_id, ts) is already stored with a different value: the stored one stays,
-- the newcomer is kept here for VEE (rule "conflicting_duplicate") instead of being dropped silently.
-- The unique key makes replaying the same conflicting batch a no-op.
CREATE TABLE reading_conflicts (
    id                bigserial PRIMARY KEY,
    meter_id          text NOT NULL,
    ts                timestamptz NOT NULL,
    volume_m3         numeric NOT NULL,
    flow_m3h          double precision,
    reverse_volume_m3 numeric,
    alarms            text[] NOT NULL DEFAULT '{}',
    gateway_id        text,
    batch_seq         bigint,
    received_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, alarms)
);
