-- Projection "tokens": API tokens, built from operator.token.created and
-- operator.token.revoked events. Only the SHA-256 of a token is ever stored.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
