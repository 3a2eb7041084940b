-- A job card's registers (meter_installations.initial_register_m3 / final_register_m3, 0010 and 0020)
-- are the water billed across an exchange: from the installation's register to the fitted meter's
-- first read, and from the removed meter's last read to its removal's register. Corrected late (the
-- job card re-entered with register-meters, a digit read wrong on site), they changed what a billed
-- period and a NEM12 day hold without writing a read, and 0052's log took only changes to where and
-- when a meter was fitted, so neither a determinant line's as_of nor a day's UpdateDateTime moved: a
-- billing system that re-imports only the periods revised never saw the correction.
--
-- A register changed on an installation (kept at its service point and meter) is now logged as the
-- span its card's water lies in, clipped to the agreements that meet it as 0052's spans are: from the
-- installation to the meter's first read after it (or its removal, or for ever, while it has none),
-- and from just after the meter's last read before its removal (or from its installation) to the
-- removal. Neither span holds a read of the meter's (a read at the installation's instant aside), so
-- /billing/reads?changed_since= gives no read for it: the reads are as they were, only the water
-- between them and the card changed. An update that leaves both registers as they were (the same file
-- recorded again) logs nothing.
CREATE FUNCTION card_register_spans(meter text, installed timestamptz, removed timestamptz,
                                    initial_changed boolean, final_changed boolean)
    RETURNS TABLE (from_ts timestamptz, to_ts timestamptz) LANGUAGE sql STABLE AS $$
    SELECT installed,
           coalesce((SELECT r.ts FROM readings r
                     WHERE r.meter_id = meter AND r.ts > installed AND r.ts < coalesce(removed, 'infinity')
                     ORDER BY r.ts LIMIT 1),
                    coalesce(removed, 'infinity'))
    WHERE initial_changed
    UNION ALL
    SELECT coalesce((SELECT r.ts + interval '1 microsecond' FROM readings r
                     WHERE r.meter_id = meter AND r.ts < removed AND r.ts > installed
                     ORDER BY r.ts DESC LIMIT 1),
                    installed),
           removed
    WHERE final_changed AND removed IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION log_installation_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM log_installation_spans(array_agg(service_point_id), array_agg(meter_id), array_agg(installed_at),
                                       array_agg(coalesce(removed_at, 'infinity'))) FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM log_installation_spans(array_agg(service_point_id), array_agg(meter_id), array_agg(installed_at),
                                       array_agg(coalesce(removed_at, 'infinity'))) FROM old_rows;
    ELSE
        PERFORM log_installation_spans(
            array_agg(CASE WHEN s.is_new THEN n.service_point_id ELSE o.service_point_id END),
            array_agg(CASE WHEN s.is_new THEN n.meter_id ELSE o.meter_id END), array_agg(s.from_ts), array_agg(s.to_ts))
        FROM old_rows o JOIN new_rows n USING (installation_id)
        CROSS JOIN LATERAL changed_spans(o.service_point_id = n.service_point_id AND o.meter_id = n.meter_id,
                                         o.installed_at, o.removed_at, n.installed_at, n.removed_at) s;
        -- a register corrected (a row that changed its service point or meter was logged whole above)
        PERFORM log_installation_spans(array_agg(n.service_point_id), array_agg(n.meter_id),
                                       array_agg(s.from_ts), array_agg(s.to_ts))
        FROM old_rows o JOIN new_rows n USING (installation_id)
        CROSS JOIN LATERAL card_register_spans(
            n.meter_id, n.installed_at, n.removed_at,
            o.initial_register_m3 IS DISTINCT FROM n.initial_register_m3,
            o.final_register_m3 IS DISTINCT FROM n.final_register_m3) s
        WHERE o.service_point_id = n.service_point_id AND o.meter_id = n.meter_id AND s.from_ts < s.to_ts;
    END IF;
    RETURN NULL;
END
$$;
