-- Which gateways may report a meter (collector.meter_gateways). The broker's ACL pins a gateway to
-- its own topic, but nothing held it to its own meters: gw-b stored 99999.0 m3 for gw-a's meter an
-- hour ahead, and gw-a's real 100.02 went to reading_conflicts. A reading or meter event from a
-- gateway its meter is not assigned to is now a dead letter. A meter first heard from a gateway is
-- assigned to it (by 'ingest'); an operator assigns others (`aquami collector assign-meters`).
CREATE TABLE meter_gateways (
    meter_id    text NOT NULL REFERENCES meters ON DELETE CASCADE,
    gateway_id  text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    assigned_by text NOT NULL,   -- 'ingest' (first heard), 'migration 0066', or the operator's command
    PRIMARY KEY (meter_id, gateway_id)
);
CREATE INDEX meter_gateways_gateway_idx ON meter_gateways (gateway_id);

-- The meters known so far keep the gateways they had: the one first heard (meters.last_gateway_id)
-- and every gateway that delivered their readings or meter events in the last 35 days (a wM-Bus
-- meter heard by two receivers keeps both).
INSERT INTO meter_gateways (meter_id, gateway_id, assigned_by)
SELECT meter_id, last_gateway_id, 'migration 0066' FROM meters WHERE last_gateway_id IS NOT NULL
UNION
SELECT DISTINCT r.meter_id, r.gateway_id, 'migration 0066' FROM readings r JOIN meters USING (meter_id)
WHERE r.received_at >= now() - interval '35 days' AND r.gateway_id IS NOT NULL
UNION
SELECT DISTINCT e.meter_id, e.gateway_id, 'migration 0066' FROM events e JOIN meters USING (meter_id)
WHERE e.ts >= now() - interval '35 days' AND e.gateway_id IS NOT NULL
ON CONFLICT DO NOTHING;

-- A dead letter for a meter its gateway may not report names both, so that once the meter is
-- assigned its readings can be stored after all (`aquami collector assign-meters --replay`).
ALTER TABLE dead_letters ADD COLUMN meter_id text, ADD COLUMN gateway_id text;
CREATE INDEX dead_letters_unassigned_idx ON dead_letters (meter_id, gateway_id) WHERE meter_id IS NOT NULL;
