//! Normalisation and validation of account fields (spec auth-users-admin.md
//! §9): email, username, password, full name, bio, OTP code.
//!
//! Lengths are counted in characters like the reference's validator, and every
//! limit is also at most the database column's, so a value that passes here
//! can never fail on insert. Strings with NUL characters are refused (Postgres
//! cannot store them, which would otherwise surface as a 500).

/// Longest stored email (users.email varchar(255)).
pub const EMAIL_MAX: usize = 255;
/// bcrypt only reads 72 bytes; longer passwords are refused, never truncated.
pub const PASSWORD_MAX_BYTES: usize = 72;

/// Normalises an email (§9.1): lower-case, trim, and for Gmail addresses
/// (`gmail.com`, `googlemail.com`) drop `+tags` and dots from the local part
/// and use `gmail.com`.
///
/// Unlike the reference, `+tags` are kept for every other domain: elsewhere
/// `a+b@corp.com` and `a@corp.com` may be different mailboxes, and sending a
/// code for one to the other would let a typed address claim an account it
/// does not own. For Gmail both rewrites name the same mailbox.
///
/// The domain is also brought to the one form mail delivery resolves it to
/// (issue 15, C12): one trailing dot dropped, then IDNA (UTS #46: width and
/// compatibility folding, case, punycode to Unicode), so `x@gmail.com.`,
/// `x@ｇmail.com` and `x@gmail.com` are one address. A local part is never
/// rewritten that way (other servers may tell its forms apart), so one
/// that NFKC would change is refused instead. A refused address comes back
/// empty, which every caller's validation answers with 400.
pub fn normalize_email(raw: &str) -> String {
    let lowered = raw.to_lowercase();
    let s = lowered.trim();
    let Some(at) = s.rfind('@') else {
        return s.to_string();
    };
    if at == 0 {
        return s.to_string();
    }
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let Some(domain) = normalize_domain(domain) else {
        return String::new();
    };
    if !unicode_normalization::is_nfkc(local) {
        return String::new();
    }
    if domain == "gmail.com" || domain == "googlemail.com" {
        let local = local.split('+').next().unwrap_or(local).replace('.', "");
        return format!("{local}@gmail.com");
    }
    format!("{local}@{domain}")
}

/// The domain as DNS resolves it, in Unicode form; `None` when IDNA refuses
/// it (or it still ends with a dot after the one allowed is dropped).
fn normalize_domain(domain: &str) -> Option<String> {
    use idna::uts46::{AsciiDenyList, Hyphens, Uts46};
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() || domain.ends_with('.') {
        return None;
    }
    let (mapped, result) =
        Uts46::new().to_unicode(domain.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
    result.ok()?;
    Some(mapped.into_owned())
}

/// RFC 5322-style address check applied after normalisation: dot-atom or
/// quoted local part, a domain with at least two labels whose last label
/// starts and ends with a letter (one trailing dot tolerated). Unicode
/// letters are allowed.
pub fn is_valid_email(email: &str) -> bool {
    if email.is_empty() || email.chars().count() > EMAIL_MAX || email.contains('\0') {
        return false;
    }
    let Some(at) = email.rfind('@') else {
        return false;
    };
    let (local, domain) = (&email[..at], &email[at + 1..]);
    valid_local_part(local) && valid_domain(domain)
}

fn valid_local_part(local: &str) -> bool {
    if local.is_empty() || local.chars().count() > 64 {
        return false;
    }
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        let inner = &local[1..local.len() - 1];
        let mut escaped = false;
        for c in inner.chars() {
            if c.is_control() {
                return false;
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return false;
            }
        }
        return !escaped;
    }
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    local.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_alphanumeric() || SPECIALS.contains(c))
    })
}

fn valid_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().count() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return false;
    }
    let last = labels[labels.len() - 1];
    let first_ok = last.chars().next().is_some_and(char::is_alphabetic);
    let last_ok = last.chars().last().is_some_and(char::is_alphabetic);
    first_ok && last_ok
}

/// Register-time username normalisation (§9.2): trim, lower-case, keep only
/// `[a-z0-9_]`.
pub fn normalize_username(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// A username as users may choose it: 3–50 ASCII letters or digits.
pub fn is_valid_username(u: &str) -> bool {
    (3..=50).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The password rule (§9.3): 8–72 characters and at most 72 bytes (bcrypt's
/// limit), with an upper-case letter, a lower-case letter, a digit and a
/// punctuation or symbol character. Not trimmed.
pub fn is_strong_password(p: &str) -> bool {
    let chars = p.chars().count();
    if !(8..=72).contains(&chars) || p.len() > PASSWORD_MAX_BYTES || p.contains('\0') {
        return false;
    }
    let (mut upper, mut lower, mut digit, mut special) = (false, false, false, false);
    for c in p.chars() {
        if c.is_uppercase() {
            upper = true;
        } else if c.is_lowercase() {
            lower = true;
        } else if c.is_numeric() {
            digit = true;
        } else if is_punct_or_symbol(c) {
            special = true;
        }
    }
    upper && lower && digit && special
}

/// Unicode punctuation or symbol, approximated without category tables:
/// ASCII punctuation, or any other visible non-alphanumeric character.
fn is_punct_or_symbol(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control()
}

/// A display name: trimmed, then 3–100 characters, no control characters.
/// Returns the trimmed name.
pub fn full_name(raw: &str) -> Option<String> {
    crate::http::text::display_name(raw, 3, 100)
}

/// A bio: trimmed free text of at most 255 characters. Empty means "no bio".
pub fn bio(raw: &str) -> Option<String> {
    crate::http::text::free_text(raw, 255)
}

/// An OTP code is exactly six characters (non-digits simply never match).
pub fn is_valid_otp_code(code: &str) -> bool {
    code.chars().count() == 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_normalisation() {
        assert_eq!(
            normalize_email("  John.Doe+x@GoogleMail.com "),
            "johndoe@gmail.com"
        );
        assert_eq!(normalize_email("A.B+news@Gmail.com"), "ab@gmail.com");
        // Other providers keep their sub-addresses and dots.
        assert_eq!(normalize_email("a+b@Corp.com"), "a+b@corp.com");
        assert_eq!(
            normalize_email("first.last@corp.com"),
            "first.last@corp.com"
        );
        assert_eq!(normalize_email("@x.com"), "@x.com");
        // One address, whatever form its domain is typed in.
        for same in [
            "x@gmail.com.",
            "x@ｇmail.com",
            "X@GMAIL.COM",
            "x@ＧＭＡＩＬ．ｃｏｍ",
        ] {
            assert_eq!(normalize_email(same), "x@gmail.com", "{same}");
        }
        assert_eq!(normalize_email("a@xn--exmple-cua.de"), "a@exämple.de");
        assert_eq!(normalize_email("a@Exämple.de."), "a@exämple.de");
        // Addresses that do not survive normalisation are refused.
        for refused in [
            "a@b.com..",
            "a@b_c.com",
            "ｘ@corp.com",
            "a@xn--a.com",
            "a@.",
        ] {
            assert_eq!(normalize_email(refused), "", "{refused}");
        }
        assert_eq!(normalize_email("plain"), "plain");
    }

    #[test]
    fn email_format() {
        for ok in [
            "a@b.co",
            "user@test.com",
            "a.b-c_d@sub.example.org",
            "\"quoted name\"@example.com",
            "josé@exämple.de",
            "a@b.com.",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "user@localhost",
            "a@b.c1",
            "a@@b.com",
            "a b@c.com",
            ".a@b.com",
            "a..b@c.com",
            "a@-b.com",
            "a@b..com",
            "noat.com",
            "a@b.com..",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(!is_valid_email(&long));
    }

    #[test]
    fn usernames() {
        assert_eq!(normalize_username("  RegSpace123  "), "regspace123");
        assert_eq!(normalize_username("Ab_c-d!"), "ab_cd");
        assert!(is_valid_username("abc"));
        assert!(!is_valid_username("ab"));
        assert!(!is_valid_username("ab_c"));
        assert!(!is_valid_username(&"a".repeat(51)));
    }

    #[test]
    fn passwords() {
        assert!(is_strong_password("Secret123!"));
        assert!(!is_strong_password("secret123!"));
        assert!(!is_strong_password("SECRET123!"));
        assert!(!is_strong_password("Secret!!!"));
        assert!(!is_strong_password("Secret123"));
        assert!(!is_strong_password("Se1!"));
        assert!(is_strong_password("Pässwört1€"));
        // 72 characters but more than 72 bytes.
        let multi = format!("Aa1!{}", "é".repeat(68));
        assert_eq!(multi.chars().count(), 72);
        assert!(!is_strong_password(&multi));
        let exact = format!("Aa1!{}", "x".repeat(68));
        assert!(is_strong_password(&exact));
    }

    #[test]
    fn names_and_bios() {
        assert_eq!(full_name("  Alice  ").as_deref(), Some("Alice"));
        assert!(full_name("   ").is_none());
        assert!(full_name("ab").is_none());
        assert!(full_name(&"é".repeat(100)).is_some());
        assert!(full_name(&"é".repeat(101)).is_none());
        assert_eq!(bio("  hi ").as_deref(), Some("hi"));
        assert!(bio(&"x".repeat(256)).is_none());
        assert!(bio("a\0b").is_none());
    }
}
