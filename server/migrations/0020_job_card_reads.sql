-- Billing across an installation or removal uses the registers written on the job cards
-- (meter_installations.initial_register_m3 / final_register_m3, see server/billing/repository.py).
-- The water between two register values of one meter, or NULL when the later one is lower: a job
-- card above the meter's next read is a mistake for a person to correct, not negative water.
CREATE FUNCTION forward_difference(p_earlier numeric, p_later numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_later >= p_earlier THEN p_later - p_earlier END
$$;
