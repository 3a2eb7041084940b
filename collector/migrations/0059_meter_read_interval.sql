-- Each meter's own read interval (collector/vee/intervals.py): the usual spacing of its actual reads,
-- taken to the nearest standard interval that divides a day (900, 1800, 3600, ..., 86400 s). VEE
-- writes it every round for the meters it has enough reads of; NULL until then (VEE's configured
-- expected_interval_s, 3600 s). Billing measures an opening or closing read's distance from its
-- line's boundary against it: a daily meter's read 18 hours before the month began is its usual one.
ALTER TABLE meters ADD COLUMN read_interval_s integer CHECK (read_interval_s > 0);
