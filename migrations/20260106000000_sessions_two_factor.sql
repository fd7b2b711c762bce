-- Issue 18: login sessions (devices) and TOTP two-factor authentication.

-- One row per sign-in (password, Google, register). Tokens carry the id as
-- `sid`; a revoked or missing row refuses them.
CREATE TABLE sessions (
    id           uuid         NOT NULL PRIMARY KEY,
    user_id      uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz  NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- Null until the first authenticated request after sign-in.
    last_seen_at timestamptz      NULL,
    -- When the session's token expires (the row is useless after that).
    expires_at   timestamptz  NOT NULL,
    ip           varchar(45)      NULL,
    user_agent   varchar(512)     NULL,
    name         varchar(100) NOT NULL,
    revoked_at   timestamptz      NULL
);

-- The user's live sessions, newest first (list, revoke-all).
CREATE INDEX sessions_user_live_idx ON sessions (user_id, created_at DESC)
    WHERE revoked_at IS NULL;
-- Cleanup of expired rows.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- A TOTP secret (AES-256-GCM, the user id as associated data). `enabled_at`
-- null: set up but not confirmed yet. `last_step`: the latest RFC 6238 time
-- step accepted, so no code (or an older one) is accepted twice.
CREATE TABLE user_two_factor (
    user_id    uuid        NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_enc bytea       NOT NULL,
    enabled_at timestamptz     NULL,
    last_step  bigint          NULL,
    created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- One-time recovery codes, keyed HMAC-SHA256 of the normalised code.
CREATE TABLE user_recovery_codes (
    id        uuid        NOT NULL PRIMARY KEY,
    user_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash char(64)    NOT NULL,
    used_at   timestamptz     NULL,
    UNIQUE (user_id, code_hash)
);
