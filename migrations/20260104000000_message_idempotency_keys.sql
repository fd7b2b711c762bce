-- Extension (issue 16): `Idempotency-Key` of POST /api/messages. One row per
-- (sender, key), written in the send's transaction before the message, so
-- concurrent retries meet on the primary key and only one message is
-- stored. The message id is checked at commit (the row precedes it).
-- Rows older than 24 h are ignored and removed by `idempotency-key-cleanup`.
CREATE TABLE message_idempotency_keys (
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    message_id   uuid        NOT NULL
                 REFERENCES messages (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX message_idempotency_keys_created_idx ON message_idempotency_keys (created_at);
CREATE INDEX message_idempotency_keys_message_idx ON message_idempotency_keys (message_id);
