//! The inbound allowance of one socket: a token bucket in memory, checked
//! before a frame costs anything else (JSON parsing, Redis, PostgreSQL).
//! Frames beyond it are ignored; a socket that keeps sending them is closed
//! with [`FLOOD_CLOSE`].

use tokio::time::Instant;

/// Frames a socket may send at once.
pub const BURST: f64 = 20.0;
/// Frames per second a socket may send sustained.
pub const PER_SECOND: f64 = 5.0;
/// Ignored frames (draining at one per second) after which the socket is closed.
pub const MAX_IGNORED: f64 = 50.0;
/// Close code and reason for a socket that floods (documented in asyncapi).
pub const FLOOD_CLOSE: (u16, &str) = (4029, "too many messages");

/// What to do with one inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Handle,
    Ignore,
    Close,
}

pub struct Allowance {
    tokens: f64,
    ignored: f64,
    at: Instant,
}

impl Allowance {
    pub fn new() -> Self {
        Self {
            tokens: BURST,
            ignored: 0.0,
            at: Instant::now(),
        }
    }

    /// Accounts one frame arriving now.
    pub fn frame(&mut self) -> Verdict {
        self.frame_at(Instant::now())
    }

    fn frame_at(&mut self, now: Instant) -> Verdict {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + secs * PER_SECOND).min(BURST);
        self.ignored = (self.ignored - secs).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Handle;
        }
        self.ignored += 1.0;
        if self.ignored > MAX_IGNORED {
            Verdict::Close
        } else {
            Verdict::Ignore
        }
    }
}

impl Default for Allowance {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_then_close() {
        let t0 = Instant::now();
        let mut a = Allowance::new();
        a.at = t0;
        for _ in 0..20 {
            assert_eq!(a.frame_at(t0), Verdict::Handle);
        }
        for _ in 0..50 {
            assert_eq!(a.frame_at(t0), Verdict::Ignore);
        }
        assert_eq!(a.frame_at(t0), Verdict::Close);

        // A steady 5 frames/s is always handled.
        let mut b = Allowance::new();
        b.at = t0;
        for i in 1..=200u64 {
            assert_eq!(
                b.frame_at(t0 + Duration::from_millis(200 * i)),
                Verdict::Handle
            );
        }
    }
}
