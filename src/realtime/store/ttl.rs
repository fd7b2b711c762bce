//! When this instance last refreshed each user's stream expiry, so an
//! append sends `PEXPIRE` only when the last one it sent is older than
//! [`Refreshed::every`]: a 10,000-member message was 10,000 `PEXPIRE`s,
//! about a third of Redis's time for it (bench/README, tenth session).
//!
//! Why the idle TTL still holds: a skipped refresh means this instance set
//! the expiry to at least `idle_ttl` after a moment less than `every` ago,
//! so every event is kept at least `idle_ttl − every` after its append,
//! whatever other instances do (their refreshes only extend it). `every`
//! is 1 % of the TTL, at most a minute. A created stream gets its expiry
//! from `create.lua`, a lost one is recreated by the next append, and a
//! forgotten entry only costs one more `PEXPIRE`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Users remembered at most (~5 MB); past it the stale ones go, and if
/// all are fresh, all go (appends then refresh as if new).
const CAP: usize = 100_000;

pub struct Refreshed {
    /// False for a TTL of 0: streams never expire, nothing is refreshed.
    expiring: bool,
    every: Duration,
    at: Mutex<HashMap<Uuid, Instant>>,
}

impl Refreshed {
    pub fn new(idle_ttl: Duration) -> Self {
        Self {
            expiring: !idle_ttl.is_zero(),
            every: (idle_ttl / 100).min(Duration::from_secs(60)),
            at: Mutex::new(HashMap::new()),
        }
    }

    /// For each user, whether an append at `now` must refresh the expiry.
    pub fn due<'a>(&self, users: impl Iterator<Item = &'a Uuid>, now: Instant) -> Vec<bool> {
        if !self.expiring {
            return users.map(|_| false).collect();
        }
        let at = self.lock();
        users
            .map(|u| {
                at.get(u)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= self.every)
            })
            .collect()
    }

    /// Records refreshes sent at `now` (taken before they were sent).
    pub fn done<'a>(&self, users: impl Iterator<Item = &'a Uuid>, now: Instant) {
        if !self.expiring {
            return;
        }
        let mut at = self.lock();
        at.extend(users.map(|u| (*u, now)));
        if at.len() > CAP {
            at.retain(|_, t| now.saturating_duration_since(*t) < self.every);
            if at.len() > CAP {
                at.clear();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
        // A panic elsewhere cannot leave the map inconsistent.
        self.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_is_due_once_per_period_per_user() {
        let r = Refreshed::new(Duration::from_secs(200));
        assert_eq!(r.every, Duration::from_secs(2));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        assert_eq!(r.due([a, b].iter(), t0), vec![true, true]);
        r.done([a].iter(), t0);
        assert_eq!(
            r.due([a, b].iter(), t0 + Duration::from_secs(1)),
            vec![false, true]
        );
        assert_eq!(r.due([a].iter(), t0 + Duration::from_secs(2)), vec![true]);
    }

    #[test]
    fn streams_that_never_expire_are_never_refreshed() {
        let r = Refreshed::new(Duration::ZERO);
        let u = Uuid::new_v4();
        assert_eq!(r.due([u].iter(), Instant::now()), vec![false]);
        r.done([u].iter(), Instant::now());
        assert_eq!(r.lock().len(), 0);
    }

    #[test]
    fn the_period_is_a_hundredth_of_the_ttl_and_at_most_a_minute() {
        assert_eq!(
            Refreshed::new(Duration::from_secs(86_400)).every,
            Duration::from_secs(60)
        );
        assert_eq!(
            Refreshed::new(Duration::from_secs(1)).every,
            Duration::from_millis(10)
        );
    }

    #[test]
    fn past_the_cap_stale_users_are_forgotten_first() {
        let r = Refreshed::new(Duration::from_secs(200));
        let t0 = Instant::now();
        let old: Vec<Uuid> = (0..CAP).map(|_| Uuid::new_v4()).collect();
        r.done(old.iter(), t0);
        let late = t0 + Duration::from_secs(3);
        let new = Uuid::new_v4();
        r.done([new].iter(), late);
        assert_eq!(r.lock().len(), 1);
        assert_eq!(r.due([new, old[0]].iter(), late), vec![false, true]);
    }
}
