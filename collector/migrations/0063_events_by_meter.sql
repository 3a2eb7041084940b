-- migrate: online index
-- A meter's latest offline or online event, found without reading every meter's events: the meters
-- API says which meters their gateway reports offline (server.meters.repository). Built chunk by chunk
-- outside a transaction (collector.migrate), as the gateways' events go on arriving.
CREATE INDEX events_meter_ts_idx ON events (meter_id, ts);
