-- Extension (issue 17): emoji reactions on messages. One row per user per
-- emoji per message; rows go with their message (hard delete, chat
-- cleanup) and with their user (account hard delete).
CREATE TABLE message_reactions (
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji      text        NOT NULL CHECK (length(emoji) BETWEEN 1 AND 64),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (message_id, emoji, user_id)
);

-- The user FK's cascade looks rows up by user.
CREATE INDEX message_reactions_user_idx ON message_reactions (user_id);
