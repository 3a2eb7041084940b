-- A meter moved to another gateway (`aquami collector assign-meters … --gateway NEW`) lost the
-- readings its old gateway still held in its spool, measured before the move: the move deleted the
-- old assignment, and they became dead letters that --replay would not store (README told operators
-- to --add the new gateway first and move the meter once the old spool was empty). A move now keeps
-- the old assignment with `until`, the moment of the move: the old gateway's readings and events of
-- the meter measured before it are stored, for HANDOVER_DAYS after it (collector.meter_gateways), and
-- those measured after it are dead letters. A gateway assigned again is current again (until NULL).
ALTER TABLE meter_gateways ADD COLUMN until timestamptz;
COMMENT ON COLUMN meter_gateways.until IS
    'NULL: the gateway reports the meter now; else when the meter moved away from it (its readings measured before are still taken, for a while)';
