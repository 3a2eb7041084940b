-- A meter's own alarms that are no flow (tamper, dry, low_battery, meter_error) were stored with the
-- household's use while the alarm was on as their rate_l_h (a tamper alarm "4.1 L/h" in the demo) and
-- that use summed as volume_l, the water lost: nothing measures what a tampered, dry or failing meter
-- lost, and the use it did register is billed, not lost. Detection now stores 0 for both
-- (collector.detection.alarms); the alerts stored before are put right here. Their enquiries quote no
-- rate (server migration 0031's shows_rate), so none is told of the change.
UPDATE alerts SET rate_l_h = 0, volume_l = 0
WHERE kind IN ('tamper', 'dry', 'low_battery', 'meter_error') AND (rate_l_h <> 0 OR volume_l <> 0);
