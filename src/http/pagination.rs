//! Query-string and keyset-pagination helpers shared by list endpoints:
//! reading raw query parameters without axum's plain-text rejections, the
//! contract's `limit` rules and the base64url (padded) UUID cursors.

use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

use super::response::PageMeta;
use crate::error::AppError;

/// Default page size of every list.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page size of validated lists.
pub const MAX_LIMIT: i64 = 50;

/// Raw query parameters (first value wins, like Go's `Query().Get`).
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parses a raw query string (`None` = no query).
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, empty when absent.
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }
}

/// `limit` per the contract: absent/empty/0 → 20; not an integer → 400
/// `Invalid limit`; negative or above 50 → 400 `Bad Request`.
pub fn parse_limit(raw: Option<&str>) -> Result<i64, AppError> {
    let raw = match raw {
        None | Some("") => return Ok(DEFAULT_LIMIT),
        Some(r) => r,
    };
    let n: i64 = raw
        .parse()
        .map_err(|_| AppError::bad_request("Invalid limit"))?;
    match n {
        0 => Ok(DEFAULT_LIMIT),
        1..=MAX_LIMIT => Ok(n),
        _ => Err(AppError::bad_request("Bad Request")),
    }
}

/// Encodes a cursor: base64 URL-safe alphabet WITH `=` padding.
pub fn encode_cursor(plain: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(plain.as_bytes())
}

/// Decodes a UUID cursor; `None` for anything that is not one (lists that
/// ignore bad cursors then start from the first page).
pub fn decode_uuid_cursor(raw: Option<&str>) -> Option<Uuid> {
    let raw = raw.filter(|r| !r.is_empty())?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.as_bytes())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    Uuid::try_parse(text.trim()).ok()
}

/// 400 `Invalid cursor format`: a cursor that decodes but holds a value the
/// database cannot compare with (issue 15, D13).
pub fn invalid_cursor() -> AppError {
    AppError::bad_request("Invalid cursor format")
}

/// Longest text a cursor may carry (names are far shorter).
const CURSOR_TEXT_MAX: usize = 1000;

/// A cursor timestamp within PostgreSQL's and RFC 3339's years (1–9999).
pub fn cursor_time(t: DateTime<Utc>) -> Result<DateTime<Utc>, AppError> {
    if (1..=9999).contains(&t.year()) {
        Ok(t)
    } else {
        Err(invalid_cursor())
    }
}

/// A cursor timestamp in Unix microseconds, range-checked.
pub fn cursor_micros(micros: i64) -> Result<DateTime<Utc>, AppError> {
    cursor_time(DateTime::from_timestamp_micros(micros).ok_or_else(invalid_cursor)?)
}

/// A cursor text PostgreSQL can bind: no NUL, at most 1,000 characters.
pub fn cursor_text(s: &str) -> Result<&str, AppError> {
    if s.contains('\0') || s.chars().count() > CURSOR_TEXT_MAX {
        return Err(invalid_cursor());
    }
    Ok(s)
}

/// A cursor count within an `int` column's range (never negative).
pub fn cursor_count(n: i64) -> Result<i64, AppError> {
    if (0..=i64::from(i32::MAX)).contains(&n) {
        Ok(n)
    } else {
        Err(invalid_cursor())
    }
}

/// A search text from the query string: at most `max` characters and no
/// NUL (PostgreSQL text cannot hold one), else 400 `Bad Request`.
pub fn search_text(raw: &str, max: usize) -> Result<&str, AppError> {
    if raw.chars().count() > max || raw.contains('\0') {
        return Err(AppError::bad_request("Bad Request"));
    }
    Ok(raw)
}

/// Escapes `%`, `_` and `\` for a `LIKE`/`ILIKE` pattern (escape char `\`).
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Cuts a `limit + 1` fetch down to `limit` and builds the forward-only
/// meta, the cursor being `cursor_of(last item)`.
pub fn forward_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, PageMeta) {
    let limit = usize::try_from(limit).unwrap_or(0);
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_next {
        rows.last().map(|r| encode_cursor(&cursor_of(r)))
    } else {
        None
    };
    (
        rows,
        PageMeta {
            next_cursor,
            has_next,
            prev_cursor: None,
            has_prev: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_rules() {
        assert_eq!(parse_limit(None).unwrap(), 20);
        assert_eq!(parse_limit(Some("")).unwrap(), 20);
        assert_eq!(parse_limit(Some("0")).unwrap(), 20);
        assert_eq!(parse_limit(Some("50")).unwrap(), 50);
        assert_eq!(
            parse_limit(Some("abc")).unwrap_err().to_string(),
            "Invalid limit"
        );
        assert_eq!(
            parse_limit(Some("51")).unwrap_err().to_string(),
            "Bad Request"
        );
        assert_eq!(
            parse_limit(Some("-1")).unwrap_err().to_string(),
            "Bad Request"
        );
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_none() {
        let id = Uuid::now_v7();
        let c = encode_cursor(&id.to_string());
        assert_eq!(encode_cursor("??>"), "Pz8-", "URL-safe alphabet");
        assert_eq!(encode_cursor("a"), "YQ==", "padded");
        assert_eq!(decode_uuid_cursor(Some(&c)), Some(id));
        assert_eq!(decode_uuid_cursor(Some("bukan-base64-valid")), None);
        assert_eq!(decode_uuid_cursor(Some(&encode_cursor("nope"))), None);
        assert_eq!(decode_uuid_cursor(None), None);
    }

    #[test]
    fn cursor_values_are_range_checked() {
        assert!(cursor_micros(-8_000_000_000_000_000_000).is_err());
        assert!(cursor_micros(i64::MIN).is_err());
        assert!(cursor_micros(1_700_000_000_000_000).is_ok());
        assert!(cursor_text("a\0b").is_err());
        assert!(cursor_text(&"x".repeat(1001)).is_err());
        assert_eq!(cursor_text("Group").unwrap(), "Group");
        assert!(cursor_count(i64::MIN).is_err());
        assert!(cursor_count(-1).is_err());
        assert_eq!(cursor_count(3).unwrap(), 3);
    }

    #[test]
    fn search_texts() {
        assert_eq!(search_text("abc", 3).unwrap(), "abc");
        assert!(search_text("abcd", 3).is_err());
        assert!(search_text("a\0", 3).is_err());
    }

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }

    #[test]
    fn first_query_value_wins() {
        let q = QueryParams::parse(Some("a=1&a=2&b=x%20y"));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some("x y"));
        assert_eq!(q.get("c"), None);
    }
}
