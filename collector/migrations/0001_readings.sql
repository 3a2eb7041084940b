-- Meters and their readings: the record of water used (see shared/architecture.md, "Database").
-- Volumes are numeric (exact decimals): billing subtracts registers, and a float would invent litres.

CREATE TABLE meters (
    meter_id        text PRIMARY KEY,
    registered      boolean NOT NULL DEFAULT false,   -- false: seen on the network, unknown to meterization
    dma             text,
    role            text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'inlet')),
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_gateway_id text
);

CREATE TABLE readings (
    meter_id          text NOT NULL,
    ts                timestamptz NOT NULL,
    volume_m3         numeric NOT NULL CHECK (volume_m3 >= 0),
    flow_m3h          double precision,
    reverse_volume_m3 numeric CHECK (reverse_volume_m3 >= 0),
    alarms            text[] NOT NULL DEFAULT '{}',
    quality           text NOT NULL DEFAULT 'actual'
                      CHECK (quality IN ('actual', 'estimated', 'substituted', 'edited')),
    quality_by        text,          -- who estimated, substituted or edited (a person or a rule)
    quality_reason    text,          -- and why
    gateway_id        text,
    batch_seq         bigint,
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts),
    CHECK (quality = 'actual' OR (quality_by IS NOT NULL AND quality_reason IS NOT NULL))
);

-- TimescaleDB where the extension is installed; the same table on plain PostgreSQL otherwise (the
-- embedded demo database). Queries use date_bin, which both have.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('readings', 'ts', chunk_time_interval => interval '7 days');
    END IF;
END
$$;

-- Batches that broke the MQTT contract, kept with the reason for someone to look at; never dropped.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL
);
