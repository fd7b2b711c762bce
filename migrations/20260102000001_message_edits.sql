-- Extension (issue 17): earlier versions of edited messages. Rows go with
-- their message (hard delete, chat cleanup); a soft delete removes them.
CREATE TABLE message_edits (
    id          uuid        NOT NULL PRIMARY KEY,
    message_id  uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    content     text            NULL,
    attachments jsonb       NOT NULL DEFAULT '[]',
    replaced_at timestamptz NOT NULL
);

CREATE INDEX message_edits_message_idx ON message_edits (message_id, replaced_at DESC, id DESC);
