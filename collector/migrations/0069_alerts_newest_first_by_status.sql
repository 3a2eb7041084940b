-- migrate: online index
-- GET /alerts?status=…, newest first, read off the start of this index (0068's, for one status): the
-- rare statuses (dismissed; open and ongoing among years of resolved ones) are not looked for
-- through every alert. Not partial: an online index migration holds columns only.
CREATE INDEX alerts_status_newest_idx ON alerts (status, detected_at DESC, alert_id DESC);
