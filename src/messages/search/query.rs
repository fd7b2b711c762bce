//! The search text: its words, the tsquery the database runs, and the
//! snippet with the matches highlighted.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::error::{AppError, AppResult};

/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words one search may have (every word is one more index lookup).
pub const MAX_WORDS: usize = 10;
/// Snippets of longer messages are cut to about this many characters.
const SNIPPET_CHARS: usize = 160;
/// How much text a snippet shows before the first match.
const SNIPPET_LEAD: usize = 50;

/// The longest prefix the search document holds as a token.
const PREFIX_TOKEN_CHARS: usize = 4;

/// The two arguments of `atoitalk_search_query(words, token)`: tsquery
/// text of whole words (and a longer last word as a prefix), and the
/// prefix token of a short last word as tsquery text, either may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsQuery {
    pub words: String,
    pub token: String,
}

/// The words of a search, folded (lower case, no accents) as the index
/// folds message text; the last one matches as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    words: Vec<String>,
}

/// A word character of the search text and of snippets (combining marks
/// stay with their letter).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// Lower case without accents: NFD, combining marks dropped. Close to
/// `unaccent` + `simple` for highlighting; matching itself is the
/// database's.
fn fold(word: &str) -> String {
    word.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Splits text into `(start byte, word)` runs of word characters.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out.into_iter()
}

impl Terms {
    /// Parses `q`: missing or blank → 400; too long, NUL, no words or too
    /// many words → 400. Punctuation separates words (as the index's parser
    /// mostly does), so operators of tsquery syntax are never passed on.
    pub fn parse(q: Option<&str>) -> AppResult<Self> {
        let q = q.map(str::trim).unwrap_or("");
        if q.is_empty() {
            return Err(AppError::bad_request("Search query is required"));
        }
        if q.chars().count() > MAX_QUERY_CHARS || q.contains('\0') {
            return Err(AppError::bad_request(format!(
                "Search query is too long (at most {MAX_QUERY_CHARS} characters)"
            )));
        }
        let words: Vec<String> = words(q).map(|(_, w)| fold(w)).collect();
        if words.is_empty() {
            return Err(AppError::bad_request(
                "Search query must contain a letter or digit",
            ));
        }
        if words.len() > MAX_WORDS {
            return Err(AppError::bad_request(format!(
                "Search query has too many words (at most {MAX_WORDS})"
            )));
        }
        Ok(Self { words })
    }

    /// The query the database runs: every word required, the last as a
    /// prefix (`'nasi' & 'gor':*`). A last word of 2-4 ASCII letters or
    /// digits is asked for as its prefix token instead (`'>gor'`, an exact
    /// index lookup: migration `20260401000000_message_search_prefix_tokens`);
    /// only ASCII, where the application's folding and the database's
    /// `unaccent` cannot differ. Words hold only letters, digits and marks,
    /// so quoting them is enough (quotes and backslashes cannot occur).
    pub fn tsquery(&self) -> TsQuery {
        // `parse` keeps at least one word.
        let Some((last, rest)) = self.words.split_last() else {
            return TsQuery::default();
        };
        let mut words: Vec<String> = rest.iter().map(|w| format!("'{w}'")).collect();
        let short = (2..=PREFIX_TOKEN_CHARS).contains(&last.len());
        let token = if short && last.bytes().all(|b| b.is_ascii_alphanumeric()) {
            format!("'>{last}'")
        } else {
            words.push(format!("'{last}':*"));
            String::new()
        };
        TsQuery {
            words: words.join(" & "),
            token,
        }
    }

    fn matches(&self, word: &str) -> bool {
        let f = fold(word);
        let last = self.words.len() - 1;
        self.words
            .iter()
            .enumerate()
            .any(|(i, w)| f == *w || (i == last && f.starts_with(w.as_str())))
    }

    /// A snippet of `content`: HTML-escaped, matching words wrapped in
    /// `<mark>`…`</mark>`; a long message is cut around its first match,
    /// with `…` where text was left out.
    pub fn snippet(&self, content: &str) -> String {
        let marks: Vec<(usize, usize)> = words(content)
            .filter(|(_, w)| self.matches(w))
            .map(|(s, w)| (s, s + w.len()))
            .collect();
        let (from, to) = window(content, marks.first().map_or(0, |m| m.0));
        let mut out = String::new();
        if from > 0 {
            out.push('…');
        }
        let mut at = from;
        for &(s, e) in marks.iter().filter(|(s, e)| *s >= from && *e <= to) {
            escape_into(&mut out, &content[at..s]);
            out.push_str("<mark>");
            escape_into(&mut out, &content[s..e]);
            out.push_str("</mark>");
            at = e;
        }
        escape_into(&mut out, &content[at..to]);
        if to < content.len() {
            out.push('…');
        }
        out
    }
}

/// The byte range of a snippet showing the match at byte `first`: up to
/// [`SNIPPET_LEAD`] characters before it (from a word start) and
/// [`SNIPPET_CHARS`] in all (to a word end), whole text when short.
fn window(content: &str, first: usize) -> (usize, usize) {
    if content.chars().count() <= SNIPPET_CHARS {
        return (0, content.len());
    }
    let before: Vec<usize> = content[..first].char_indices().map(|(i, _)| i).collect();
    let mut from = before
        .len()
        .checked_sub(SNIPPET_LEAD)
        .map_or(0, |k| before[k]);
    if from > 0 {
        // Start at the next word (never inside one, never past the match).
        from = content[from..first]
            .char_indices()
            .find(|(_, c)| c.is_whitespace())
            .map_or(from, |(i, c)| from + i + c.len_utf8());
    }
    let mut to = content[from..]
        .char_indices()
        .nth(SNIPPET_CHARS)
        .map_or(content.len(), |(i, _)| from + i);
    if to < content.len() {
        // Finish the word the cut falls in.
        to = content[to..]
            .char_indices()
            .find(|(_, c)| !is_word_char(*c))
            .map_or(content.len(), |(i, _)| to + i);
    }
    (from, to)
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Terms {
        Terms::parse(Some(q)).unwrap()
    }

    #[test]
    fn parses_words_and_builds_a_prefix_query() {
        // (search text, words, token, why)
        let cases = [
            (
                "Nasi  GORENG",
                "'nasi' & 'goreng':*",
                "",
                "5+ characters: a prefix",
            ),
            ("nasi gor", "'nasi'", "'>gor'", "earlier words whole"),
            ("Kopi", "", "'>kopi'", "4 characters: a token"),
            ("ok", "", "'>ok'", "2 characters: a token"),
            ("kopi x", "'kopi' & 'x':*", "", "1: a prefix"),
            ("café", "", "'>cafe'", "folded to ASCII"),
            ("ñoño", "", "'>nono'", "folded to ASCII"),
            ("日本語", "'日本語':*", "", "not ASCII: a prefix"),
            (
                "a & b | !c <-> 'd':*",
                "'a' & 'b' & 'c' & 'd':*",
                "",
                "tsquery syntax is never passed through",
            ),
        ];
        for (text, words, token, why) in cases {
            let want = TsQuery {
                words: words.into(),
                token: token.into(),
            };
            assert_eq!(terms(text).tsquery(), want, "{text}: {why}");
        }
        for bad in [None, Some(""), Some("   "), Some("!!! ..."), Some("a\0b")] {
            assert!(Terms::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Terms::parse(Some(&"x".repeat(201))).is_err());
        assert!(Terms::parse(Some("a b c d e f g h i j k")).is_err());
    }

    #[test]
    fn snippet_marks_matches_and_escapes_the_rest() {
        let t = terms("nasi gor");
        assert_eq!(
            t.snippet("<b>Nasi</b> goreng & sate, bukan nasional"),
            "&lt;b&gt;<mark>Nasi</mark>&lt;/b&gt; <mark>goreng</mark> &amp; sate, bukan nasional"
        );
        assert_eq!(
            terms("cafe").snippet("Café \"x\""),
            "<mark>Café</mark> &quot;x&quot;"
        );
    }

    #[test]
    fn long_messages_are_cut_around_the_first_match() {
        let text = format!("{} target {}", "awal ".repeat(60), "akhir ".repeat(60));
        let s = terms("target").snippet(&text);
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("<mark>target</mark>"));
        assert!(s.chars().count() < 230, "{}", s.chars().count());
        assert!(!s.contains("awa…") && !s[3..].starts_with("wal"), "{s}");
    }
}
