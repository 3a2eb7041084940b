-- Each detection run loads the alerts whose episodes reach into its window (last_seen at or after
-- the window's first instant) besides the active ones: a resolved alert found again is matched,
-- never inserted a second time (collector.alert_store.alerts_to_merge).
CREATE INDEX alerts_last_seen_idx ON alerts (last_seen);
