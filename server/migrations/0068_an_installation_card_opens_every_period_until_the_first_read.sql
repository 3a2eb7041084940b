-- A determinant line now opens on the installation job card's register wherever no read of the
-- installation lies between the installation and the line's start (server/billing/repository.py),
-- as a meter silent for a month opens the next period on its last read: before, only the line whose
-- window started at the installation did, and the water from the card to the fitted meter's first
-- read, when that read came in a later period, was billed in none. Every period from the installation
-- up to the one of the first read opens on the card, so a card corrected revises each of them: 0067
-- logged it only at the installation and just before the first read, and the periods between (and,
-- while the meter has no read, every later one) changed their opening without their as_of moving.
--
-- The installation card is logged again as the span from the installation to the first read after it
-- (or the removal, or for ever, while it has none), as 0063 logged it; the removal card as 0067 does,
-- just before the removal. The span holds no read of the meter's (a read at the installation's
-- instant aside), so /billing/reads?changed_since= gives none for it. A NEM12 day between holds no
-- read of the meter, its UpdateDateTime the file's own time whatever the log says.
CREATE OR REPLACE FUNCTION card_register_spans(meter text, installed timestamptz, removed timestamptz,
                                               initial_changed boolean, final_changed boolean)
    RETURNS TABLE (from_ts timestamptz, to_ts timestamptz) LANGUAGE sql STABLE AS $$
    SELECT installed,
           coalesce((SELECT r.ts FROM readings r
                     WHERE r.meter_id = meter AND r.ts > installed AND r.ts < coalesce(removed, 'infinity')
                     ORDER BY r.ts LIMIT 1),
                    coalesce(removed, 'infinity'))
    WHERE initial_changed
    UNION ALL
    SELECT removed - interval '1 microsecond', removed
    WHERE final_changed AND removed IS NOT NULL
$$;
