//! Who may read or act on one message: the rules of reading a chat's
//! history and of sending in it, applied to a single message. Shared by the
//! message extensions (reactions, pins, edit history) so each answers
//! exactly as history and send do.

use chrono::{DateTime, Utc};

use super::repo::ChatContext;
use crate::error::{AppError, AppResult};

/// What the caller wants to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Read it (history rules).
    Read,
    /// Change something about it (send rules: in a private chat the other
    /// participant must exist, not be deleted or banned, and no block may
    /// stand between the two).
    Write,
}

/// Checks `ctx` (the chat of a message created at `created_at`, seen by the
/// caller) for `intent`. A message from before the caller hid the chat is
/// as invisible as in the history: 404.
pub fn check(
    ctx: Option<ChatContext>,
    created_at: DateTime<Utc>,
    intent: Intent,
) -> AppResult<ChatContext> {
    let ctx = ctx
        .filter(|c| !c.deleted)
        .ok_or_else(|| AppError::not_found("Chat not found or deleted"))?;
    if !ctx.is_member {
        return Err(AppError::forbidden("Forbidden"));
    }
    if ctx.hidden_at.is_some_and(|h| created_at <= h) {
        return Err(AppError::not_found("Message not found"));
    }
    if intent == Intent::Write {
        check_private_write(&ctx)?;
    }
    Ok(ctx)
}

/// The send rules of a private chat: the other participant exists, is not
/// deleted or banned, and no block stands between the two. Groups pass.
pub fn check_private_write(ctx: &ChatContext) -> AppResult<()> {
    if !ctx.is_private() {
        return Ok(());
    }
    if !ctx.other_exists {
        return Err(AppError::forbidden("User does not exist"));
    }
    if ctx.other_deleted {
        return Err(AppError::forbidden("User is deleted"));
    }
    if ctx.other_banned {
        return Err(AppError::forbidden("User is currently suspended/banned"));
    }
    if ctx.blocked {
        return Err(AppError::forbidden("Forbidden"));
    }
    Ok(())
}
