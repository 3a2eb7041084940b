-- An alert's kind is one collector.detection.alerts.AlertKind knows. A row of any other kind
-- (written by hand, or by a newer collector than this schema) made every list that held it fail:
-- GET /alerts, the web page, dismissal and the detection runs themselves. A new kind arrives with
-- the migration that adds it here (its enquiry rule may follow; until then it is "other alert").
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_known CHECK (
    kind IN ('leak', 'burst', 'reverse_flow', 'stuck', 'dma_burst', 'tamper', 'dry', 'low_battery', 'meter_error')
);
