-- Who pays for which water: accounts, service points (where water is delivered), the service
-- agreements that tie an account to a service point for a period, and the meter installed at a
-- service point for a period. Periods are half-open [start, end): end NULL means still current.
-- A meter replacement is two installations at the same service point, one ending where the next
-- starts; billing sums consumption over both.

CREATE TABLE accounts (
    account_id   text PRIMARY KEY,
    name         text NOT NULL,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    billing_cycle text,                       -- e.g. 'monthly', 'quarterly-A'
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE service_points (
    service_point_id text PRIMARY KEY,
    address          text,
    dma              text,
    premise_type     text NOT NULL DEFAULT 'residential'
                     CHECK (premise_type IN ('residential', 'commercial', 'industrial', 'public', 'other')),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE service_agreements (
    agreement_id     bigserial PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts,
    service_point_id text NOT NULL REFERENCES service_points,
    start_at         timestamptz NOT NULL,
    end_at           timestamptz,
    CHECK (end_at IS NULL OR end_at > start_at)
);
CREATE INDEX service_agreements_account_idx ON service_agreements (account_id, start_at);
CREATE INDEX service_agreements_service_point_idx ON service_agreements (service_point_id, start_at);

CREATE TABLE meter_installations (
    installation_id  bigserial PRIMARY KEY,
    service_point_id text NOT NULL REFERENCES service_points,
    meter_id         text NOT NULL REFERENCES meters,
    installed_at     timestamptz NOT NULL,
    removed_at       timestamptz,
    initial_register_m3 numeric CHECK (initial_register_m3 >= 0),  -- read on the installation job card
    final_register_m3   numeric CHECK (final_register_m3 >= 0),    -- read when removed
    CHECK (removed_at IS NULL OR removed_at > installed_at)
);
CREATE INDEX meter_installations_service_point_idx ON meter_installations (service_point_id, installed_at);
CREATE INDEX meter_installations_meter_idx ON meter_installations (meter_id, installed_at);

-- No two agreements on one service point, and no two meters at one service point (nor one meter at
-- two service points), at the same time; enforced where btree_gist exists (contrib; the TimescaleDB
-- image has it; a bare embedded PostgreSQL may not).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gist') THEN
        CREATE EXTENSION IF NOT EXISTS btree_gist;
        ALTER TABLE service_agreements ADD CONSTRAINT service_agreements_no_overlap
            EXCLUDE USING gist (service_point_id WITH =, tstzrange(start_at, end_at) WITH &&);
        ALTER TABLE meter_installations ADD CONSTRAINT meter_installations_one_meter_per_point
            EXCLUDE USING gist (service_point_id WITH =, tstzrange(installed_at, removed_at) WITH &&);
        ALTER TABLE meter_installations ADD CONSTRAINT meter_installations_one_point_per_meter
            EXCLUDE USING gist (meter_id WITH =, tstzrange(installed_at, removed_at) WITH &&);
    END IF;
END
$$;
