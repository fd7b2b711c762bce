-- Groups: a maintained count of each group's live members (members whose user is not
-- soft-deleted, the `member_count` every group response shows), and the indexes of the
-- public directory that need it.
--
-- Why a stored count: the directory sorts public groups by member count with keyset
-- pagination. Computed on the fly, every page would count every membership of every public
-- group (the reference runs a correlated count per row; no index can serve the order). Stored
-- and indexed, a page is an index range scan.
--
-- The count is maintained by triggers, so it stays right whichever code path changes
-- memberships or users (group endpoints, admin tools, account deletion, the scheduler's hard
-- deletes, tests inserting rows directly):
--   * group_members INSERT / DELETE: +1 / -1 on the group when the member's user is live;
--   * users.deleted_at set / cleared: -1 / +1 on each group of that user;
--   * hard DELETE of a live user: -1 on each of their groups, before the row goes (the
--     membership cascade that follows finds no user row and changes nothing).
-- Every change is an UPDATE of the group row, so concurrent changes serialise on its row lock.

ALTER TABLE group_chats ADD COLUMN member_count bigint NOT NULL DEFAULT 0;

UPDATE group_chats g
   SET member_count = (SELECT count(*)
                         FROM group_members gm
                         JOIN users u ON u.id = gm.user_id AND u.deleted_at IS NULL
                        WHERE gm.group_chat_id = g.id);

CREATE FUNCTION group_members_maintain_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NULL) THEN
            UPDATE group_chats SET member_count = member_count + 1 WHERE id = NEW.group_chat_id;
        END IF;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id AND deleted_at IS NULL) THEN
        UPDATE group_chats SET member_count = member_count - 1 WHERE id = OLD.group_chat_id;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER group_members_count
    AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION group_members_maintain_count();

CREATE FUNCTION users_maintain_group_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.deleted_at IS NOT NULL THEN
            RETURN OLD;
        END IF;
        delta := -1;
    ELSIF (OLD.deleted_at IS NULL) = (NEW.deleted_at IS NULL) THEN
        RETURN NEW;
    ELSIF NEW.deleted_at IS NULL THEN
        delta := 1;
    ELSE
        delta := -1;
    END IF;
    -- Lock the user's groups in id order first: two such updates sharing groups never
    -- deadlock on each other.
    PERFORM 1 FROM group_chats
      WHERE id IN (SELECT group_chat_id FROM group_members WHERE user_id = OLD.id)
      ORDER BY id FOR UPDATE;
    UPDATE group_chats SET member_count = member_count + delta
     WHERE id IN (SELECT group_chat_id FROM group_members WHERE user_id = OLD.id);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_group_counts_on_soft_delete
    AFTER UPDATE OF deleted_at ON users
    FOR EACH ROW EXECUTE FUNCTION users_maintain_group_counts();

CREATE TRIGGER users_group_counts_on_delete
    BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_maintain_group_counts();

-- Public directory, sort_by=member_count: ORDER BY member_count DESC, id ASC with keyset
-- (-member_count, id) > (-n, id). The negated key lets one row comparison walk the index.
CREATE INDEX group_chats_public_member_count_idx ON group_chats ((-member_count), id)
    WHERE is_public = true;

-- Public directory search, description arm: lower(description) LIKE 'q%' (the name arm is
-- group_chats_public_lower_name_prefix_idx); the two combine in a BitmapOr. Trigram indexes
-- cannot serve one- and two-character prefixes.
CREATE INDEX group_chats_public_lower_description_prefix_idx
    ON group_chats (lower(description) text_pattern_ops)
    WHERE is_public = true;
