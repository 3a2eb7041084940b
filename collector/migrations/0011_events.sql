-- Events from the gateways' ``events`` topic (aquami/contracts/events.schema.json), one row per event.
-- A meter event names its meter; a gateway's own event (the spool's limit) has meter_id NULL.
-- The key makes a redelivered event a no-op, like readings.
CREATE TABLE events (
    meter_id    text,
    ts          timestamptz NOT NULL,
    event       text NOT NULL,
    state       text NOT NULL DEFAULT 'raised' CHECK (state IN ('raised', 'cleared')),
    detail      jsonb,
    gateway_id  text,
    batch_seq   bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_key UNIQUE NULLS NOT DISTINCT (gateway_id, meter_id, ts, event, state)
);
CREATE INDEX events_event_ts_idx ON events (event, ts DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('events', 'ts', chunk_time_interval => interval '30 days');
    END IF;
END
$$;
