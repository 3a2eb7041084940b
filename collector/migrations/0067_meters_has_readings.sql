-- Whether a meter has any reading stored. A meter registered ahead of its fitting has none, and the
-- meters API's look for its latest reading (newest first, server.meters.repository) found nothing
-- only after probing every 7-day chunk of readings: GET /meters took 83 ms for 500 meters, 250 of
-- them unread, on 3 years of history (9 ms on 1 week), and grew by the week. The API skips the look
-- for a meter without readings.
--
-- false only where certainly none: register_meters records a new meter so; the collector's ingest
-- (collector.store) and a person's substituted reading (collector.vee.editing) set it true with the
-- meter's first reading, in the reading's transaction. Any other row is true ("may have some"): the
-- default, so that a meter recorded by any other means is looked up as before.
ALTER TABLE meters ADD COLUMN has_readings boolean NOT NULL DEFAULT true;

-- the meters already recorded: each one's newest reading looked up as the API did (one probe per
-- chunk for a meter without any, newest chunk first; not a scan of every reading)
UPDATE meters m SET has_readings = false
WHERE (SELECT r.ts FROM readings r WHERE r.meter_id = m.meter_id ORDER BY r.ts DESC LIMIT 1) IS NULL;
