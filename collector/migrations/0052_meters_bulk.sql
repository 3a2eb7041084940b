-- A bulk meter supplies many premises behind one meter: a block of flats, an estate, a campus.
-- Meterization says which. Its flow is never idle, so detection does not read continuous flow on it
-- as a leak, and does not judge its first peaks before it has a history (collector.detection).
ALTER TABLE meters
    ADD COLUMN bulk boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT meters_bulk_is_a_customer CHECK (NOT bulk OR role = 'customer');  -- an inlet meters a district, not premises
