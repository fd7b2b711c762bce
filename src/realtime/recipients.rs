//! Who receives user-level events: a user's contacts are the people they
//! share a private chat with (either slot, hidden or not). Group co-members
//! are not contacts.

use sqlx::PgPool;
use uuid::Uuid;

/// Contacts of `user`.
pub async fn contacts(db: &PgPool, user: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CASE WHEN user1_id = $1 THEN user2_id ELSE user1_id END AS other \
         FROM private_chats \
         WHERE (user1_id = $1 AND user2_id IS NOT NULL) OR (user2_id = $1 AND user1_id IS NOT NULL)",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Contacts of `user` with no block in either direction (presence events).
pub async fn unblocked_contacts(db: &PgPool, user: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.other FROM ( \
           SELECT CASE WHEN user1_id = $1 THEN user2_id ELSE user1_id END AS other \
           FROM private_chats \
           WHERE (user1_id = $1 AND user2_id IS NOT NULL) OR (user2_id = $1 AND user1_id IS NOT NULL) \
         ) c \
         WHERE NOT EXISTS ( \
           SELECT 1 FROM user_blocks b \
           WHERE (b.blocker_id = $1 AND b.blocked_id = c.other) \
              OR (b.blocker_id = c.other AND b.blocked_id = $1))",
    )
    .bind(user)
    .fetch_all(db)
    .await
}
