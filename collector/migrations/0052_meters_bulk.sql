-- A bulk meter supplies many premises behind one meter: a block of flats, an estate, a campus.
-- Meterization says which. Its flow is seldom idle, so detection finds its leaks by its minimum night
-- flow, and does not judge its first peaks before it has a history (collector.detection.bulk).
ALTER TABLE meters
    ADD COLUMN bulk boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT meters_bulk_is_a_customer CHECK (NOT bulk OR role = 'customer');  -- an inlet meters a district, not premises
