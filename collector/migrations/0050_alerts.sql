-- Alerts raised by detection (collector/detection) and by the meters' own alarm bits.
-- One row per episode: a detection run updates its row (open → ongoing → resolved), never adds a
-- second one; a person may dismiss it with a reason. Customer care's enquiries and billing's leak
-- adjustments read from here.
CREATE TABLE alerts (
    alert_id       text PRIMARY KEY,
    kind           text NOT NULL,
    source         text NOT NULL CHECK (source IN ('detector', 'meter')),
    status         text NOT NULL CHECK (status IN ('open', 'ongoing', 'resolved', 'dismissed')),
    meter_id       text,                       -- NULL for a district (DMA) alert
    dma            text NOT NULL,
    start          timestamptz NOT NULL,       -- estimated start of the episode
    detected_at    timestamptz NOT NULL,       -- the reading that first made it detectable
    last_seen      timestamptz NOT NULL,
    ended_at       timestamptz,
    rate_l_h       double precision NOT NULL,
    volume_l       double precision NOT NULL,  -- lost (or unregistered) from start to last_seen
    confidence     double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    evidence       jsonb NOT NULL,             -- [[from, to], …] intervals that triggered it
    resolved_at    timestamptz,
    dismissed_at   timestamptz,
    dismissed_by   text,
    dismiss_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'dismissed' OR (dismissed_by IS NOT NULL AND dismiss_reason IS NOT NULL))
);

CREATE INDEX alerts_active_idx ON alerts (kind, meter_id, dma) WHERE status IN ('open', 'ongoing');
CREATE INDEX alerts_meter_idx ON alerts (meter_id, detected_at DESC);
CREATE INDEX alerts_dma_idx ON alerts (dma, detected_at DESC);

-- When detection last ran, so an incremental run knows where it stands.
CREATE TABLE detection_runs (
    run_at      timestamptz PRIMARY KEY,
    window_from timestamptz NOT NULL,
    window_to   timestamptz NOT NULL,
    meters      integer NOT NULL,
    opened      integer NOT NULL,
    updated     integer NOT NULL,
    resolved    integer NOT NULL
);
