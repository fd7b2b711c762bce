//! Event bodies stored once for many recipients. An event for at least
//! [`SHARE_MIN`] users (a group's message) is one `SET <prefix>rt:b:<id>`
//! holding its body, and each recipient's entry holds the id in field `r`
//! instead of the body in `d`. Stored inline, a 10,000-member message was
//! 10,000 copies of its ~534 bytes: encoded by the publisher, parsed by
//! Redis, and kept in Redis's memory for the whole retention (at 10 msg/s
//! and the default 600 s, 6,000 entries per member, some 36 GB).
//!
//! A body lives [`ttl`]: the idle TTL (a day when streams never expire),
//! never less than the retention window, so the "younger than the window"
//! rule holds for shared events too. Only an entry kept by the count rule
//! for longer than that can outlive its body; a read that meets one
//! answers [`super::Range::Expired`], as for a trimmed entry (the socket
//! gets `sync.reset` `expired`, or close 4010 in the middle of a replay).

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::{Pos, Stored, Target};
use crate::config::ResumeConfig;

/// Recipients from which an event's body is stored once. Below it the
/// extra key (~100 bytes of overhead) and the replay's extra read cost
/// more than the copies: a private chat's two entries stay inline.
pub const SHARE_MIN: usize = 8;

const DAY: Duration = Duration::from_secs(86_400);

/// How long a shared body is kept.
pub fn ttl(cfg: &ResumeConfig) -> Duration {
    let idle = if cfg.idle_ttl.is_zero() {
        DAY
    } else {
        cfg.idle_ttl
    };
    idle.max(cfg.retention)
}

/// For each body, the id it is shared under (None: stored inline).
pub fn plan(bodies: usize, targets: &[Target]) -> Vec<Option<String>> {
    let mut counts = vec![0usize; bodies];
    for t in targets {
        if let Some(c) = counts.get_mut(t.body) {
            *c += 1;
        }
    }
    counts
        .into_iter()
        .map(|c| (c >= SHARE_MIN).then(|| Uuid::now_v7().simple().to_string()))
        .collect()
}

/// An entry's event: its JSON, or the id of a shared body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Inline(String),
    Shared(String),
}

/// One entry as read, before shared bodies are looked up.
#[derive(Debug, Clone)]
pub struct Raw {
    pub pos: Pos,
    pub body: Body,
    pub unread: i64,
}

/// The distinct shared ids among `raws`, in order.
pub fn ids(raws: &[Raw]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in raws {
        if let Body::Shared(id) = &r.body {
            if !out.contains(&id.as_str()) {
                out.push(id);
            }
        }
    }
    out
}

/// The entries with their bodies filled in from `found`; None when any
/// body is gone (the reader cannot hand out the entries after a hole).
pub fn resolve(raws: Vec<Raw>, found: &HashMap<String, String>) -> Option<Vec<Stored>> {
    raws.into_iter()
        .map(|r| {
            let json = match r.body {
                Body::Inline(json) => json,
                Body::Shared(id) => found.get(&id)?.clone(),
            };
            Some(Stored {
                pos: r.pos,
                json,
                unread: r.unread,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(body: usize) -> Target {
        Target {
            user: Uuid::now_v7(),
            body,
            unread: 0,
        }
    }

    fn raw(n: u64, body: Body) -> Raw {
        Raw {
            pos: Pos {
                generation: 1,
                n,
                ms: 7,
            },
            body,
            unread: n as i64,
        }
    }

    #[test]
    fn only_bodies_with_enough_recipients_are_shared_each_under_its_own_id() {
        let mut targets: Vec<Target> = (0..SHARE_MIN).map(|_| target(0)).collect();
        targets.extend((0..SHARE_MIN - 1).map(|_| target(1)));
        targets.extend((0..2 * SHARE_MIN).map(|_| target(2)));
        let plan = plan(3, &targets);
        assert!(plan[0].is_some(), "{plan:?}");
        assert!(plan[1].is_none(), "one recipient short of sharing");
        assert!(plan[2].is_some());
        assert_ne!(plan[0], plan[2]);
        assert_eq!(plan[0].as_ref().map(String::len), Some(32));
    }

    #[test]
    fn a_shared_body_lives_the_idle_ttl_and_never_less_than_the_window() {
        let cfg = |idle: u64, window: u64| ResumeConfig {
            enabled: true,
            retention: Duration::from_secs(window),
            min_events: 1000,
            idle_ttl: Duration::from_secs(idle),
            cluster_nodes: Vec::new(),
        };
        assert_eq!(ttl(&cfg(86_400, 600)), DAY);
        assert_eq!(ttl(&cfg(60, 600)), Duration::from_secs(600));
        assert_eq!(ttl(&cfg(0, 600)), DAY, "streams that never expire");
        assert_eq!(ttl(&cfg(0, 2 * 86_400)), 2 * DAY);
    }

    #[test]
    fn bodies_are_filled_in_and_a_missing_one_fails_the_whole_read() {
        let raws = vec![
            raw(1, Body::Inline("{\"a\":1}".into())),
            raw(2, Body::Shared("x".into())),
            raw(3, Body::Shared("y".into())),
            raw(4, Body::Shared("x".into())),
        ];
        assert_eq!(ids(&raws), ["x", "y"]);
        let mut found = HashMap::from([("x".to_string(), "{\"b\":2}".to_string())]);
        assert!(resolve(raws.clone(), &found).is_none(), "y is gone");
        found.insert("y".into(), "{\"c\":3}".into());
        let got = resolve(raws, &found).unwrap_or_default();
        let json: Vec<&str> = got.iter().map(|s| s.json.as_str()).collect();
        assert_eq!(json, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"b\":2}"]);
        assert_eq!(got[3].unread, 4);
        assert_eq!(got[3].pos.n, 4);
    }
}
