-- Meters whose district (DMA) name is over 500 characters (server/meters/districts.py's
-- DMA_MAX_LENGTH), which register-meters took before it refused them: named once, as this migration
-- runs, in one WARNING that `aquami collector migrate` writes to stderr. A name of about 2,650 bytes
-- or more is past what the alerts' and enquiries' btree indexes take (2,704 bytes an entry), so
-- detection cannot store that district's alerts (it stores every other district's and logs it).
-- Nothing is changed: only the utility knows the district's real name. Registering the meters again
-- with a shorter district (register-meters) corrects them.
DO $$
DECLARE
    meter_count bigint;
    district_count bigint;
BEGIN
    SELECT count(*), count(DISTINCT dma) INTO meter_count, district_count FROM meters WHERE length(dma) > 500;
    IF meter_count > 0 THEN
        RAISE WARNING '% meter(s) in % district(s) have a district name over 500 characters, which register-meters now refuses and detection may not be able to store alerts for: list them with SELECT meter_id, length(dma) FROM meters WHERE length(dma) > 500, and register them again with a shorter district (aquami server register-meters METERS.csv)',
            meter_count, district_count;
    END IF;
END
$$;
