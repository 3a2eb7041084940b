-- Readings stored more than a day after their time (a gateway's spool after a long outage of the
-- broker): older than what a VEE round looks back over (collector/vee/rounds.py, two days), so the
-- collector notes the oldest of each such flush here, and the next round reaches back to it (VEE
-- and consumption) and then deletes the notes it has covered. Plain inserts, no unique key: two
-- collectors noting at once never wait on each other.
CREATE TABLE late_readings (
    id       bigserial PRIMARY KEY,
    since    timestamptz NOT NULL,              -- the oldest reading's time in the flush
    noted_at timestamptz NOT NULL DEFAULT now()
);
