-- A register that steps back by less than VEE's backwards_tolerance_m3 (collector/vee/config.py,
-- 0.0005 m³) is no step VEE explains or flags: a static meter's net register moving back with a
-- pressure transient's reverse flow, or a 0.1-litre register's last digit. Such an interval's
-- consumption was NULL (unknown), so the hour, the day and the bill went unknown for half a litre.
-- It is now what the register says, a little below zero: the intervals then sum to the register's
-- difference, as billing's opening and closing reads do (taken as zero, each wobble would add its
-- rise again: 0.2 L an hour is 144 L a month).
CREATE OR REPLACE FUNCTION interval_consumption(
    volume_m3 numeric, previous_volume_m3 numeric, has_discontinuity boolean, discontinuity_m3 numeric
) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN has_discontinuity THEN discontinuity_m3
        WHEN volume_m3 >= previous_volume_m3 - 0.0005 THEN volume_m3 - previous_volume_m3
    END
$$;
