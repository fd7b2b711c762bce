//! Wire types of reactions.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most distinct emoji one message may carry.
pub const MAX_DISTINCT_EMOJI: i64 = 20;

/// One emoji's reactions on a message as the caller sees them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: i64,
    /// The caller is among those who reacted with it.
    pub me: bool,
}

/// One emoji's reactions without the viewer (`message.reaction` goes to
/// every member).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
}

/// Response of `PUT` / `DELETE /api/messages/{messageID}/reactions/{emoji}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionsResponse {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    /// In order of first use.
    pub reactions: Vec<ReactionSummary>,
}

/// `message.reaction` payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionEvent {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub emoji: String,
    pub user_id: Uuid,
    /// `true`: added; `false`: removed.
    pub added: bool,
    /// In order of first use.
    pub reactions: Vec<ReactionCount>,
}

/// The emoji of a path segment (already percent-decoded), in its fully
/// qualified form so `❤` and `❤️` are one reaction; `None` unless it is
/// exactly one emoji (a grapheme cluster of the Unicode emoji list: skin
/// tones, ZWJ sequences, flags and keycaps included).
pub fn parse_emoji(raw: &str) -> Option<&'static str> {
    emojis::get(raw).map(|e| e.as_str())
}

#[cfg(test)]
mod tests {
    use super::parse_emoji;

    #[test]
    fn accepts_single_emoji_grapheme_clusters_only() {
        for ok in ["👍", "👍🏽", "👨‍👩‍👧", "🇮🇩", "❤️", "#️⃣"] {
            assert_eq!(parse_emoji(ok), Some(ok), "{ok}");
        }
        assert_eq!(parse_emoji("❤"), Some("❤️"), "unqualified is normalised");
        for bad in [
            "",
            "a",
            "1",
            "👍👍",
            "👍 ",
            "ok",
            ":thumbsup:",
            "\u{1f3fd}",
            "🇮",
        ] {
            assert_eq!(parse_emoji(bad), None, "{bad:?}");
        }
    }
}
