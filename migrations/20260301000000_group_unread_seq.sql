-- Group unread counters without a write per member per message.
--
-- Before: every group message incremented `group_members.unread_count` of every other
-- member, so a message to a 10,000-member group wrote 10,000 rows (and their WAL) inside
-- the send's transaction while holding the chat row lock: sends to big groups took seconds.
--
-- Now each chat counts its messages (`chats.message_seq`, +1 per recorded message, under the
-- chat row lock every send and mark-read already takes) and each membership remembers the
-- count it has read up to (`group_members.read_seq`). A member's unread counter is
-- `chats.message_seq - group_members.read_seq`: a send writes the chat row and the sender's
-- membership only; a mark-read sets `read_seq` to the chat's count. Private chats keep their
-- two stored counters (two rows at most per send).
--
-- `group_members.unread_count` is no longer maintained for groups. It stays (an instance of
-- the previous release still reads it during a rolling deploy) and goes in a later release.

ALTER TABLE chats ADD COLUMN message_seq bigint NOT NULL DEFAULT 0;

-- Existing counters carry over: with every chat at 0, read_seq = -unread gives the same value.
ALTER TABLE group_members ADD COLUMN read_seq bigint NOT NULL DEFAULT 0;
UPDATE group_members SET read_seq = -unread_count WHERE unread_count <> 0;

-- A new membership starts with nothing unread, whichever code path inserts it (group
-- endpoints, invites, admin tools, seed scripts): its read_seq is the chat's count when the
-- row is inserted. An explicit non-zero read_seq is kept.
CREATE FUNCTION group_members_start_read_seq() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.read_seq = 0 THEN
        NEW.read_seq := COALESCE((SELECT c.message_seq FROM group_chats g
                                    JOIN chats c ON c.id = g.chat_id
                                   WHERE g.id = NEW.group_chat_id), 0);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER group_members_read_seq
    BEFORE INSERT ON group_members
    FOR EACH ROW EXECUTE FUNCTION group_members_start_read_seq();

-- The member count (20260101000005) per statement instead of per row: a row trigger
-- updated the group row once per inserted member, so one statement adding 10,000 members
-- wrote 10,000 versions of the same row (138 s in the 10,000-member bench seed). Same rules:
-- only members whose user is live count; groups are locked in id order so two statements
-- sharing groups never deadlock.
DROP TRIGGER group_members_count ON group_members;
DROP FUNCTION group_members_maintain_count();

-- One function for both triggers: each names its transition table `changed`.
CREATE FUNCTION group_members_count_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sign bigint := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM 1 FROM group_chats
      WHERE id IN (SELECT DISTINCT group_chat_id FROM changed)
      ORDER BY id FOR UPDATE;
    UPDATE group_chats g SET member_count = g.member_count + sign * d.n
      FROM (SELECT r.group_chat_id, count(*) AS n
              FROM changed r JOIN users u ON u.id = r.user_id AND u.deleted_at IS NULL
             GROUP BY r.group_chat_id) d
     WHERE g.id = d.group_chat_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER group_members_count_insert
    AFTER INSERT ON group_members
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION group_members_count_changed();

CREATE TRIGGER group_members_count_delete
    AFTER DELETE ON group_members
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION group_members_count_changed();
