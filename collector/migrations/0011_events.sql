-- Meter events from the gateways' ``events`` topic (alarms raised and cleared), one row per event.
-- The key makes a redelivered event a no-op, like readings.
CREATE TABLE events (
    meter_id    text NOT NULL,
    ts          timestamptz NOT NULL,
    event       text NOT NULL,
    state       text NOT NULL DEFAULT 'raised' CHECK (state IN ('raised', 'cleared')),
    detail      jsonb,
    gateway_id  text,
    batch_seq   bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts, event, state)
);
CREATE INDEX events_event_ts_idx ON events (event, ts DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('events', 'ts', chunk_time_interval => interval '30 days');
    END IF;
END
$$;
