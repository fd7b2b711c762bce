//! Who is signing in, as far as a session records it (issue 18): the client
//! IP resolved by the trusted-proxy rules, the `User-Agent`, and a short
//! human name derived from it ("Firefox on Linux").

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::http::middleware::ClientIp;

/// Longest user agent kept (the column's size).
pub const MAX_USER_AGENT: usize = 512;

/// The device part of a sign-in request.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<ClientIp>().map(|c| c.0);
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(clean_user_agent)
            .filter(|s| !s.is_empty());
        Ok(ClientMeta { ip, user_agent })
    }
}

/// The user agent without control characters, cut to [`MAX_USER_AGENT`].
fn clean_user_agent(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A short name for the device: "<browser> on <system>", the client's own
/// product name for non-browsers, or "Unknown device".
pub fn device_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|u| !u.trim().is_empty()) else {
        return "Unknown device".into();
    };
    let os = system(ua);
    match (browser(ua), os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("{} on {o}", product(ua)),
        (None, None) => product(ua),
    }
}

/// Browsers, most specific first (Edge and Opera also say Chrome; Chrome
/// also says Safari).
fn browser(ua: &str) -> Option<&'static str> {
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ];
    BROWSERS
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, name)| *name)
}

/// Operating systems, most specific first (iOS and Android UAs also name
/// the desktop systems they resemble).
fn system(ua: &str) -> Option<&'static str> {
    const SYSTEMS: [(&str, &str); 8] = [
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    SYSTEMS
        .iter()
        .find(|(needle, _)| ua.contains(needle))
        .map(|(_, name)| *name)
}

/// The first product token ("curl/8.5.0" → "curl"), at most 40 characters.
fn product(ua: &str) -> String {
    let first = ua.split_whitespace().next().unwrap_or_default();
    let name = first.split('/').next().unwrap_or_default();
    let name: String = name.chars().take(40).collect();
    if name.is_empty() || name == "Mozilla" {
        "Unknown device".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn names_common_clients() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "Chrome on Windows"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox on Linux"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Safari on iPhone"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0", "Edge on macOS"),
            ("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", "Chrome on Android"),
            ("curl/8.5.0", "curl"),
            ("okhttp/4.12.0", "okhttp"),
            ("Dart/3.2 (dart:io) Android", "Dart on Android"),
            ("Mozilla/5.0", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(device_name(Some(ua)), want, "{ua}");
        }
        assert_eq!(device_name(None), "Unknown device");
        assert_eq!(device_name(Some("  ")), "Unknown device");
    }
}
