-- API keys: the secret is never stored, only its SHA-256 (keys are 256-bit random, so a fast hash
-- is enough; a slow password hash protects low-entropy secrets, which these are not).
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    secret_hash text NOT NULL,
    name        text NOT NULL,
    roles       text[] NOT NULL CHECK (cardinality(roles) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
