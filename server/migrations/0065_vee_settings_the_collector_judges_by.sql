-- A person's correction of a meter's newest read is refused when it is faster than the meter
-- (collector.vee.register_order, server.meters.router): judged as VEE's over_max_flow judges an
-- interval, by the meter's own max_flow_m3h, else VEE's default_max_flow_m3h, with max_flow_slack.
-- The server judged by VeeConfig's defaults (5 m³/h, 5 %), while the collector's VEE may run with
-- others (`aquami collector vee --config`): at 20 m³/h, a correction VEE takes was refused; at
-- 2 m³/h, one VEE then flags over_max_flow was stored. Each VEE run now records here the two
-- settings it judged by (collector.vee.settings_in_use), and the server's check reads them; none
-- recorded (no VEE run yet): VeeConfig's defaults, which the first run uses unless told otherwise.
CREATE TABLE vee_settings (
    one_row              boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    default_max_flow_m3h double precision NOT NULL CHECK (default_max_flow_m3h >= 0),
    max_flow_slack       double precision NOT NULL CHECK (max_flow_slack >= 0),
    recorded_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE vee_settings IS
    'the VEE settings the last VEE run judged over_max_flow by: a correction of a newest read is judged by the same';
