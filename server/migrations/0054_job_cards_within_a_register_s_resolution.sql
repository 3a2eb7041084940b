-- A job card's register above the meter's next read by no more than VEE's backwards_tolerance_m3
-- (collector/vee/config.py, 0.0005 m³: a card written to the litre and rounded up) is no
-- contradiction, as two reads that close apart are none (collector migration 0054): the water
-- between them is the registers' difference, a little below zero. Before, any card above the next
-- read made its water NULL: a card of 1.0014 m³ before a first read of 1.0010 left the determinant's
-- consumption unknown and the NEM12 hour null, the other meter's water in that hour with it.
-- Further above, the card or the read is wrong, and the water between them is still unknown.
CREATE OR REPLACE FUNCTION forward_difference(p_earlier numeric, p_later numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_later >= p_earlier - 0.0005 THEN p_later - p_earlier END
$$;
