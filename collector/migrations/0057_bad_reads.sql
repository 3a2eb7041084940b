-- A bad read (collector/vee/rules.py): one actual read that leaves the register (a glitch read of 0
-- between 1234.5 and 1234.52 m³) while the next read is back at the level before it. VEE records
-- it as a step that counts nothing ('bad_read'), and the next read's interval as the water since the
-- read before the bad one ('after_bad_read'), so consumption neither takes the glitch for a meter
-- replacement nor counts the register's climb back (1234 m³) as use.
ALTER TABLE register_discontinuities DROP CONSTRAINT register_discontinuities_kind_check;
ALTER TABLE register_discontinuities ADD CONSTRAINT register_discontinuities_kind_check
    CHECK (kind IN ('replacement', 'rollover', 'reverse_flow', 'unexplained', 'bad_read', 'after_bad_read'));
