//! Group lists: the members of a group and the public directory.

use uuid::Uuid;

use super::{bad_request, NOT_FOUND, NOT_MEMBER};
use crate::chats::dto::QueryParams;
use crate::error::{AppError, AppResult};
use crate::groups::dto::{
    decode_member_cursor, decode_public_cursor, encode_member_cursor, encode_public_cursor,
    like_prefix, GroupMemberDto, PublicCursor, PublicGroupDto, PublicSort, QUERY_MAX_CHARS,
};
use crate::groups::repo;
use crate::http::response::{Page, PageMeta};
use crate::state::AppState;

/// The `query` parameter of the group lists: 1–100 code points when given
/// (an empty value counts as absent), then trimmed. `None`: no filter.
fn list_query(q: &QueryParams) -> AppResult<Option<String>> {
    let Some(raw) = q.non_empty("query") else {
        return Ok(None);
    };
    if raw.chars().count() > QUERY_MAX_CHARS || raw.contains('\0') {
        return Err(bad_request());
    }
    let trimmed = raw.trim();
    Ok((!trimmed.is_empty()).then(|| like_prefix(trimmed)))
}

/// `GET /api/chats/group/{chatID}/members` (`viewer` = the caller, who must
/// be a member) and the admin member list (`viewer` = `None`).
pub async fn list_members(
    state: &AppState,
    viewer: Option<Uuid>,
    chat_id: Uuid,
    q: &QueryParams,
) -> AppResult<Page<GroupMemberDto>> {
    let prefix = list_query(q)?;
    let limit = q.limit()?;
    let after = match q.non_empty("cursor") {
        None => None,
        // The reference answers 500 here.
        Some(raw) => Some(
            decode_member_cursor(raw)
                .ok_or_else(|| AppError::bad_request("Invalid cursor format"))?,
        ),
    };
    let access = repo::access(&state.db, chat_id, viewer)
        .await?
        .ok_or_else(|| AppError::not_found(NOT_FOUND))?;
    if viewer.is_some() && !access.is_member {
        return Err(AppError::forbidden(NOT_MEMBER));
    }
    let mut rows = repo::member_page(
        &state.db,
        access.group_id,
        prefix.as_deref(),
        after,
        limit + 1,
    )
    .await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = has_next
        .then(|| rows.last().map(|r| encode_member_cursor(r.joined_at, r.id)))
        .flatten();
    Ok(Page {
        data: rows
            .into_iter()
            .map(|r| r.into_dto(state.storage.as_ref()))
            .collect(),
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    })
}

/// `GET /api/chats/group/public`.
pub async fn public_groups(
    state: &AppState,
    me: Uuid,
    q: &QueryParams,
) -> AppResult<Page<PublicGroupDto>> {
    let prefix = list_query(q)?;
    let limit = q.limit()?;
    let sort = match q.non_empty("sort_by") {
        None | Some("name") => PublicSort::Name,
        Some("member_count") => PublicSort::MemberCount,
        Some(_) => return Err(bad_request()),
    };
    let after = match q.non_empty("cursor") {
        None => None,
        Some(raw) => Some(decode_public_cursor(raw, sort)?),
    };
    let mut rows = repo::public_page(
        &mut *state.read_conn(me).await?,
        me,
        prefix.as_deref(),
        sort,
        after.as_ref(),
        limit + 1,
    )
    .await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if has_next {
        rows.last().map(|r| {
            encode_public_cursor(&match sort {
                PublicSort::Name => PublicCursor::Name(r.name.clone(), r.id),
                PublicSort::MemberCount => PublicCursor::MemberCount(r.member_count, r.id),
            })
        })
    } else {
        None
    };
    Ok(Page {
        data: rows
            .into_iter()
            .map(|r| r.into_dto(state.storage.as_ref()))
            .collect(),
        meta: PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    })
}
