-- refresh_consumption deletes whole local days of every meter's consumption and inserts them again.
-- Until a person's edit refreshed the days it touched (in the edit's own transaction), only the VEE
-- round called it, one round at a time; two overlapping refreshes of one day (an edit beside another
-- edit, of another meter, or beside a round) had the second's insert hit the first's rows:
-- "duplicate key value violates unique constraint consumption_hourly_pkey", the edit a 500 or the
-- round rolled back. Each refresh now takes a transaction lock first, so refreshes take turns and
-- the later one's DELETE sees what the earlier one wrote. The work itself is unchanged: the
-- function from 0020 under another name.
ALTER FUNCTION refresh_consumption(timestamptz, timestamptz) RENAME TO refresh_consumption_in_turn;

CREATE FUNCTION refresh_consumption(p_from timestamptz, p_to timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1668247155);  -- 'cons': held until the caller's transaction ends
    RETURN refresh_consumption_in_turn(p_from, p_to);
END
$$;
COMMENT ON FUNCTION refresh_consumption(timestamptz, timestamptz) IS
    'consumption_hourly, consumption_daily and dma_consumption_hourly of the local days [p_from, p_to) touch, recomputed; one refresh at a time';
