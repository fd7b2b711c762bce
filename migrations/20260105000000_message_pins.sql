-- Extension (issue 17): pinned messages. One row per pinned message; rows go
-- with their message (hard delete, chat cleanup: FK cascades) and a soft
-- delete removes them (a deleted message is never pinned). `chat_id` is kept
-- on the row so the per-chat list and the 50-pin cap are one index range.
CREATE TABLE message_pins (
    message_id uuid        NOT NULL PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    chat_id    uuid        NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    pinned_by  uuid            NULL REFERENCES users (id) ON DELETE SET NULL,
    pinned_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Pins list: WHERE chat_id = $1 ORDER BY pinned_at DESC, message_id DESC with keyset;
-- also the cap count and the cascade lookup when a chat is hard-deleted.
CREATE INDEX message_pins_chat_idx ON message_pins (chat_id, pinned_at DESC, message_id DESC);
-- SET NULL lookup when the pinning user is hard-deleted.
CREATE INDEX message_pins_pinned_by_idx ON message_pins (pinned_by) WHERE pinned_by IS NOT NULL;

-- The timeline entry of a pin: a new system message type.
ALTER TABLE messages DROP CONSTRAINT messages_type_check;
ALTER TABLE messages ADD CONSTRAINT messages_type_check CHECK (type IN (
    'regular', 'system_create', 'system_rename', 'system_description',
    'system_avatar', 'system_join', 'system_add', 'system_leave', 'system_kick',
    'system_promote', 'system_demote', 'system_visibility', 'system_pin'));
