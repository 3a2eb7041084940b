-- VEE results (collector/vee/): the rules each reading broke, and how each backward register step
-- was explained, which is what consumption uses instead of the raw register difference.
CREATE TABLE vee_flags (
    meter_id   text NOT NULL,
    ts         timestamptz NOT NULL,
    rule       text NOT NULL,
    detail     text,
    flagged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts, rule)
);
CREATE INDEX vee_flags_rule_idx ON vee_flags (rule, ts DESC);

CREATE TABLE register_discontinuities (
    meter_id       text NOT NULL,
    ts             timestamptz NOT NULL,  -- the first reading after the step
    kind           text NOT NULL CHECK (kind IN ('replacement', 'rollover', 'reverse_flow', 'unexplained')),
    consumption_m3 numeric,               -- the interval's consumption; NULL: unknown (not counted)
    detail         text,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts)
);
