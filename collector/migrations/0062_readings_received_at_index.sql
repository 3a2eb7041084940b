-- migrate: online index
-- The readings that arrived since a detection run's seen_at (0058), found without reading the rest.
-- Built chunk by chunk outside a transaction (collector.migrate): in one transaction it held every
-- write to readings for the whole build (1.97 s for 3.35 million readings).
CREATE INDEX readings_received_at_idx ON readings (received_at);
