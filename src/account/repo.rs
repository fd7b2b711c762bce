//! SQL of the account feature: credentials, email change, and the
//! anonymising soft delete.

use sqlx::PgExecutor;
use uuid::Uuid;

/// Email and password hash of an active user.
#[derive(Debug, sqlx::FromRow)]
pub struct Credentials {
    pub email: Option<String>,
    pub password_hash: Option<String>,
}

/// The active user's credentials, `None` when the account is gone.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The same, row-locked until the transaction ends.
pub async fn credentials_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(
        "SELECT email, password_hash FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Whether any account row uses `email`.
pub async fn email_taken(db: impl PgExecutor<'_>, email: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
        .bind(email)
        .fetch_one(db)
        .await
}

/// Sets a new email; false when the account is gone.
pub async fn set_email(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE users SET email = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(email)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Unlinks every external identity (Google) of the user.
pub async fn delete_identities(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_identities WHERE user_id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Whether the user owns a group that is not deleted.
pub async fn owns_live_group(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS ( \
           SELECT 1 FROM group_members gm \
           JOIN group_chats g ON g.id = gm.group_chat_id \
           JOIN chats c ON c.id = g.chat_id \
           WHERE gm.user_id = $1 AND gm.role = 'owner' AND c.deleted_at IS NULL)",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// Drops the user's block rows in both directions: a deleted account has no
/// use for them, and leaving them kept a ghost in other people's block
/// lists. Group memberships stay, as in the reference: the member is shown
/// as `Deleted User`, is left out of member lists and counts, cannot be
/// given a role or the ownership (400, not 404), and can be kicked.
pub async fn drop_blocks(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_blocks WHERE blocker_id = $1 OR blocked_id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Soft delete with anonymisation: the personal fields are cleared (freeing
/// the email and username) and `deleted_at` is set. Id, role, ban fields,
/// `last_seen_at` and `created_at` stay.
pub async fn anonymise(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET email = NULL, username = NULL, full_name = NULL, bio = NULL, \
                avatar_id = NULL, password_hash = NULL, deleted_at = now(), updated_at = now() \
         WHERE id = $1",
    )
    .bind(id)
    .execute(db)
    .await
    .map(|_| ())
}
