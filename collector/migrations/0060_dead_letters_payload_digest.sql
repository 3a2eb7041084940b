-- A dead letter keeps at most the first 64 KiB of its payload (a refused 60 MB message was kept
-- whole), with the payload's full length and SHA-256, so a copy kept elsewhere can be matched.
-- Rows from before keep their whole payload and have these NULL.
ALTER TABLE dead_letters
    ADD COLUMN payload_bytes bigint,
    ADD COLUMN payload_sha256 bytea;
COMMENT ON COLUMN dead_letters.payload IS 'the first 64 KiB of the payload (whole before migration 0060)';
