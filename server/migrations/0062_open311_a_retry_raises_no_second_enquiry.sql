-- A POST requests.json sent again raised another enquiry each time: an app on a bad mobile link that
-- lost the answer and retried opened a second job for customer care. Each POST that raises an
-- enquiry now claims a row here first, in the transaction that raises it (server.open311.repository):
-- by the key's id and its Idempotency-Key header when the app sends one (kept 24 hours), else by the
-- SHA-256 of the request as checked (its fields and attributes; kept 10 minutes). A POST whose claim
-- finds a live row of its key is answered with that row's enquiry, and raises none. The unique
-- indexes make two retries arriving together safe: the second's INSERT waits for the first's
-- transaction, then finds its row (ON CONFLICT), where a look before inserting would have seen
-- nothing in both. A row older than its window is claimed again by the next POST (ON CONFLICT DO
-- UPDATE … WHERE), so the table holds at most one row per key and Idempotency-Key or content; a row
-- older than the longest window (24 hours) is deleted by the next POST's claim, by the index on
-- received_at: the fingerprint is a hash of what a person wrote, contact details included, kept no
-- longer than it serves.
-- enquiry_id is null only inside the claiming transaction, which sets it before it commits.
--
-- 0043's comments say a civic app follows its request with GET requests.json, which a customer_app
-- key could not (403) until this change; and that no GET serves a person's contact details, where
-- GET /enquiries/{id} serves them to customer care (0043 cannot be edited: migrations are checked by
-- their SHA-256, and a database that applied it would be refused).
CREATE TABLE open311_posts (
    post_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id          text NOT NULL,
    idempotency_key text CHECK (idempotency_key ~ '^[ -~]{1,255}$'),
    fingerprint     bytea NOT NULL CHECK (length(fingerprint) = 32),
    enquiry_id      bigint REFERENCES enquiries ON DELETE CASCADE,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX open311_posts_by_idempotency_key ON open311_posts (key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX open311_posts_by_content ON open311_posts (key_id, fingerprint)
    WHERE idempotency_key IS NULL;
CREATE INDEX open311_posts_by_age ON open311_posts (received_at);
