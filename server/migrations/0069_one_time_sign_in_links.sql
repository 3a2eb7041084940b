-- One-time sign-in links (aquami server sign-in-link; the demo prints one). The sign-in link the demo
-- printed before, /login?key=<the API key>, left the key itself in the browser's address bar and
-- history: on a shared care-office PC, the next person could sign in under it for as long as the key
-- lived. A link now carries a random token instead, which signs in once, within 10 minutes, and
-- then signs in no one (server.sign_in_links). Only the token's SHA-256 is stored, as a key's secret
-- is (0001); redeeming it marks it used in the same UPDATE that checks it is not, so of two browsers
-- opening it together one signs in and the other is told it was used.
CREATE TABLE sign_in_links (
    token_hash  text PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    key_id      text NOT NULL REFERENCES api_keys ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
-- A link expired more than 24 hours ago is deleted by the next link made or opened (until then, it
-- is told apart as used or expired rather than as a link never made).
CREATE INDEX sign_in_links_by_expiry ON sign_in_links (expires_at);

-- What a one-time link signs a browser in with: the cookie holds a random session secret, not the
-- key (which the server does not know: only its hash is stored). It stands for the key for a shift
-- (server.auth.SESSION_LIFETIME) or until the key is revoked or the browser signs out.
CREATE TABLE sign_in_sessions (
    secret_hash text PRIMARY KEY CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    key_id      text NOT NULL REFERENCES api_keys ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX sign_in_sessions_by_expiry ON sign_in_sessions (expires_at);
