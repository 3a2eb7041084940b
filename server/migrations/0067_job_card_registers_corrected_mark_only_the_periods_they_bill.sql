-- 0063 logged a job card's register corrected as the span its water lies in: the installation card's
-- from the installation to the fitted meter's first read (or its removal, or for ever while it has
-- none), the removal card's from the removed meter's last read to its removal. A billing period's
-- as_of and a NEM12 day's UpdateDateTime move for every span logged in them, and none of those but
-- the ends depend on the card: a determinant line opens on the installation card only where its
-- window starts at the installation, and closes on the removal card only where it ends at the
-- removal; NEM12 puts the installation card's water in the hour the first read closes, and the
-- removal card's in the hour the removal closes. So a card corrected before the new meter's first
-- read marked every later billing period (and NEM12 day) revised, for ever: a billing system
-- re-pulled periods that did not change; and one corrected weeks before the first read, every
-- period and day between.
--
-- Now a corrected card is logged at the instants that depend on it: the installation card at the
-- installation (the period and day its line opens in) and just before the fitted meter's first read
-- (the hour NEM12 carries its water in; none while the meter has no read), the removal card just
-- before the removal (the period its line closes in, the hour its water lies in). The spans still
-- hold no read of the meter's (a read at the installation's instant aside, as before).
CREATE OR REPLACE FUNCTION card_register_spans(meter text, installed timestamptz, removed timestamptz,
                                               initial_changed boolean, final_changed boolean)
    RETURNS TABLE (from_ts timestamptz, to_ts timestamptz) LANGUAGE sql STABLE AS $$
    SELECT installed, installed + interval '1 microsecond'
    WHERE initial_changed
    UNION ALL
    SELECT first_read.ts - interval '1 microsecond', first_read.ts
    FROM (SELECT r.ts FROM readings r
          WHERE r.meter_id = meter AND r.ts > installed AND r.ts < coalesce(removed, 'infinity')
          ORDER BY r.ts LIMIT 1) first_read
    WHERE initial_changed
    UNION ALL
    SELECT removed - interval '1 microsecond', removed
    WHERE final_changed AND removed IS NOT NULL
$$;
