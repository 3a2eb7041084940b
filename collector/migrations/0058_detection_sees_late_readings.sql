-- A run opens an ended episode only if it detected it in the newest part of its window
-- (opens_within), or if some of the episode's readings arrived after the previous run: a gateway's
-- spool after a week offline holds episodes that began and ended while it was away, which no run
-- could have raised in their own time (collector.detection_job). seen_at is the database's clock
-- when a run read the readings, to compare with readings.received_at (the same clock; a run's own
-- now may be another); migration 0062 indexes received_at to find the readings that arrived since
-- without reading the rest.
ALTER TABLE detection_runs ADD COLUMN seen_at timestamptz;
