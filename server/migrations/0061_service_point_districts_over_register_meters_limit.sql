-- Service points whose district (DMA) name is over 500 characters (server/meters/districts.py's
-- DMA_MAX_LENGTH), which register-meters gave them from their meter before it refused such names:
-- named once, as this migration runs, in one WARNING that `aquami collector migrate` writes to
-- stderr, as server migration 0060 names such meters. 0060 counted meters only, and a point can hold
-- the name when no meter does: its meter registered again before points followed their meter, or
-- none in place there now. Nothing is changed: only the utility knows the district's real name.
-- Registering again with a shorter district the meter in place at a point moves the point.
DO $$
DECLARE
    point_count bigint;
    district_count bigint;
BEGIN
    SELECT count(*), count(DISTINCT dma) INTO point_count, district_count
    FROM service_points WHERE length(dma) > 500;
    IF point_count > 0 THEN
        RAISE WARNING '% service point(s) in % district(s) have a district name over 500 characters, which register-meters now refuses: list them with SELECT service_point_id, length(dma) FROM service_points WHERE length(dma) > 500, and register the meter in place at each again with a shorter district (aquami server register-meters METERS.csv), which moves its point',
            point_count, district_count;
    END IF;
END
$$;
