//! The one check of user-written text before it is stored (issue 15, D14).
//! Display names (user full names, group names) are one line of visible
//! text; free text (bios, descriptions, reasons, notes) may break lines but
//! carries no other control characters. Both are trimmed and capped in
//! characters, never below what the column holds.

/// A display name: trimmed, `min..=max` characters, no control characters
/// at all (BEL, ESC, line breaks, NUL...).
pub fn display_name(raw: &str, min: usize, max: usize) -> Option<String> {
    let t = raw.trim();
    let n = t.chars().count();
    ((min..=max).contains(&n) && !t.chars().any(char::is_control)).then(|| t.to_string())
}

/// Free text: trimmed, at most `max` characters, no control characters but
/// line breaks and tabs.
pub fn free_text(raw: &str, max: usize) -> Option<String> {
    let t = raw.trim();
    let allowed = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    (t.chars().count() <= max && t.chars().all(allowed)).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_visible_line() {
        assert_eq!(display_name("  Team  ", 3, 100).as_deref(), Some("Team"));
        for bad in [
            "Te\u{7}am",
            "Te\u{1b}[31mam",
            "Te\nam",
            "Te\0am",
            "ab",
            "   ",
        ] {
            assert_eq!(display_name(bad, 3, 100), None, "{bad:?}");
        }
        assert!(display_name(&"é".repeat(100), 3, 100).is_some());
        assert!(display_name(&"é".repeat(101), 3, 100).is_none());
    }

    #[test]
    fn free_text_keeps_line_breaks_only() {
        assert_eq!(free_text(" a\nb\tc ", 10).as_deref(), Some("a\nb\tc"));
        assert_eq!(free_text("", 10).as_deref(), Some(""));
        for bad in ["a\u{7}", "a\u{1b}b", "a\0b", "12345678901"] {
            assert_eq!(free_text(bad, 10), None, "{bad:?}");
        }
    }
}
