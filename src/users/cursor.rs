//! Query parameters and cursors of the user lists (search and blocked
//! list, spec §13.3/§13.4).
//!
//! A cursor is base64 (URL-safe alphabet, padded) of `<full_name>|||<id>` of
//! the last row. The id is taken after the LAST separator, so names that
//! contain `|||` still page correctly; an undecodable cursor or a bad id is
//! a 400 (the reference answered 500 for the latter).

use base64::Engine;
use uuid::Uuid;

use crate::error::AppError;

const SEPARATOR: &str = "|||";
const DEFAULT_LIMIT: i64 = 10;

/// Position after the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCursor {
    pub name: String,
    pub id: Uuid,
}

impl NameCursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE
            .encode(format!("{}{SEPARATOR}{}", self.name, self.id))
    }

    /// Decodes a cursor or fails with 400 `Bad Request`.
    pub fn decode(raw: &str) -> Result<Self, AppError> {
        let bad = || AppError::bad_request("Bad Request");
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (name, id) = text.rsplit_once(SEPARATOR).ok_or_else(bad)?;
        if name.contains('\0') {
            return Err(bad());
        }
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self {
            name: name.to_string(),
            id,
        })
    }
}

/// The common list parameters.
#[derive(Debug, Default)]
pub struct ListParams {
    /// Trimmed search text; `None` when absent or blank.
    pub query: Option<String>,
    pub cursor: Option<NameCursor>,
    pub limit: i64,
    /// `include_chat_id` (search only).
    pub include_chat_id: bool,
    /// `exclude_chat_id` (search only).
    pub exclude_chat_id: Option<Uuid>,
}

/// Parses the raw query string. The first occurrence of a key wins; empty
/// values count as absent.
pub fn parse(raw: Option<&str>) -> Result<ListParams, AppError> {
    let bad = || AppError::bad_request("Bad Request");
    let mut p = ListParams {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !seen.insert(k.to_string()) || v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "query" => {
                if v.chars().count() > 100 || v.contains('\0') {
                    return Err(bad());
                }
                let t = v.trim();
                p.query = (!t.is_empty()).then(|| t.to_string());
            }
            "cursor" => p.cursor = Some(NameCursor::decode(&v)?),
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| AppError::bad_request("Invalid limit"))?;
                if !(1..=50).contains(&n) {
                    return Err(bad());
                }
                p.limit = n;
            }
            "include_chat_id" => {
                p.include_chat_id = crate::config::parse_bool(&v)
                    .ok_or_else(|| AppError::bad_request("Invalid include_chat_id"))?;
            }
            "exclude_chat_id" => {
                p.exclude_chat_id = Some(
                    Uuid::try_parse(v.trim())
                        .map_err(|_| AppError::bad_request("Invalid exclude_chat_id"))?,
                );
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A LIKE pattern matching values that start with `text` literally.
pub fn prefix_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_errors() {
        let c = NameCursor {
            name: "A|||B".into(),
            id: Uuid::now_v7(),
        };
        assert_eq!(NameCursor::decode(&c.encode()).unwrap(), c);
        assert!(NameCursor::decode("!!!").is_err());
        let no_sep = base64::engine::general_purpose::URL_SAFE.encode("abc");
        assert!(NameCursor::decode(&no_sep).is_err());
        let bad_id = base64::engine::general_purpose::URL_SAFE.encode("abc|||not-a-uuid");
        assert!(NameCursor::decode(&bad_id).is_err());
    }

    #[test]
    fn params() {
        let p = parse(Some("query=%20Al%20&limit=5&include_chat_id=T")).unwrap();
        assert_eq!(p.query.as_deref(), Some("Al"));
        assert_eq!(p.limit, 5);
        assert!(p.include_chat_id);
        assert_eq!(parse(None).unwrap().limit, 10);
        let msg = |r: Result<ListParams, AppError>| r.unwrap_err().to_string();
        assert_eq!(msg(parse(Some("limit=x"))), "Invalid limit");
        assert_eq!(msg(parse(Some("limit=0"))), "Bad Request");
        assert_eq!(msg(parse(Some("limit=51"))), "Bad Request");
        assert_eq!(
            msg(parse(Some("include_chat_id=yes"))),
            "Invalid include_chat_id"
        );
        assert_eq!(
            msg(parse(Some("exclude_chat_id=zz"))),
            "Invalid exclude_chat_id"
        );
        assert!(parse(Some(&format!("query={}", "a".repeat(101)))).is_err());
    }

    #[test]
    fn like_escaping() {
        assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
