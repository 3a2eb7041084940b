-- The newest status of each gateway (collector.gateway_status): its link as it keeps it on the
-- broker ('online' when it connects, 'offline' when it stops or as its last will) and a summary of
-- its health. link_since is when the collector first heard the current link state (a retained
-- message heard again after a reconnect does not move it); health_at when it received the health.
CREATE TABLE gateway_status (
    gateway_id text PRIMARY KEY,
    online     boolean,
    link_since timestamptz,
    health     jsonb,
    health_at  timestamptz
);
