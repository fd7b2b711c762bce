//! What `scale fanout` and `scale floor` record per message and per member,
//! and the figures they report from it: both read the same frames (a
//! `message.new` whose content is `scale#<n>#`), so their latencies are
//! measured the same way.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::super::{ms, percentile, Row};
use crate::net::WsStream;

pub const MARK: &str = "scale#";

/// Per message: arrivals, the latest arrival and when it was sent (the
/// post's response, or the floor's trigger), in microseconds since the
/// run's origin (0 = not yet); per member: frames got and duplicates.
pub struct Track {
    origin: Instant,
    arrivals: Vec<AtomicU32>,
    last_us: Vec<AtomicU64>,
    sent_us: Vec<AtomicU64>,
    per_member: Vec<(AtomicU32, AtomicU32)>,
    /// The largest frame seen (what one delivery weighs).
    frame_bytes: AtomicU32,
}

impl Track {
    pub fn new(messages: usize, members: u32) -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            arrivals: (0..messages).map(|_| AtomicU32::new(0)).collect(),
            last_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            sent_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            per_member: (0..members)
                .map(|_| (AtomicU32::new(0), AtomicU32::new(0)))
                .collect(),
            frame_bytes: AtomicU32::new(0),
        })
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 + 1
    }

    /// Message `n` was sent (its latency counts from now).
    pub fn sent(&self, n: usize) {
        self.sent_us[n].store(self.now_us(), Ordering::Relaxed);
    }

    /// The message number a `message.new` frame carries, if it is ours.
    pub fn number(frame: &str) -> Option<usize> {
        if !frame.contains("\"message.new\"") {
            return None;
        }
        let at = frame.find(MARK)? + MARK.len();
        let digits = frame[at..].split('#').next()?;
        digits.parse().ok()
    }

    /// Opens every member's socket (`(port, source address, token)`, see
    /// [`super::connect_all`]) with a [`Self::reader`] on it, then lets
    /// the handshakes' aftermath settle for a second.
    pub async fn connect(
        self: &Arc<Self>,
        jobs: Vec<(u16, std::net::Ipv4Addr, String)>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut readers = Vec::new();
        let failed = super::connect_all(jobs, 64, |i, ws| readers.push(self.reader(i, ws))).await;
        if failed > 0 {
            anyhow::bail!("{failed} members could not connect");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(readers)
    }

    /// Reads member `i`'s socket until it closes, recording our frames in
    /// fixed counters (no allocation or JSON parse per frame).
    pub fn reader(self: &Arc<Self>, i: usize, mut ws: WsStream) -> JoinHandle<()> {
        let track = self.clone();
        tokio::spawn(async move {
            let mut seen = vec![false; track.arrivals.len()];
            while let Some(Ok(msg)) = futures::StreamExt::next(&mut ws).await {
                let Message::Text(t) = msg else { continue };
                let Some(n) = Self::number(&t).filter(|n| *n < seen.len()) else {
                    continue;
                };
                let now = track.now_us();
                track.last_us[n].fetch_max(now, Ordering::Relaxed);
                track.arrivals[n].fetch_add(1, Ordering::Relaxed);
                track
                    .frame_bytes
                    .fetch_max(t.len() as u32, Ordering::Relaxed);
                let (got, twice) = &track.per_member[i];
                got.fetch_add(1, Ordering::Relaxed);
                if std::mem::replace(&mut seen[n], true) {
                    twice.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    }

    fn answered(&self) -> Vec<usize> {
        (0..self.sent_us.len())
            .filter(|n| self.sent_us[*n].load(Ordering::Relaxed) > 0)
            .collect()
    }

    /// Waits until every sent message reached every member, or 5 s.
    pub async fn settle(&self) {
        let (answered, members) = (self.answered(), self.per_member.len() as u32);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until
            && answered
                .iter()
                .any(|n| self.arrivals[*n].load(Ordering::Relaxed) < members)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The latency row: sent → last member, with who got what.
    pub fn row(&self, name: String, extra: &str) -> Row {
        let answered = self.answered();
        let members = self.per_member.len();
        let complete = answered
            .iter()
            .filter(|n| self.arrivals[**n].load(Ordering::Relaxed) as usize == members)
            .count();
        let mut lat: Vec<u64> = answered
            .iter()
            .map(|n| {
                let last = self.last_us[*n].load(Ordering::Relaxed);
                last.saturating_sub(self.sent_us[*n].load(Ordering::Relaxed))
            })
            .collect();
        lat.sort_unstable();
        let got_all = self
            .per_member
            .iter()
            .filter(|(got, twice)| {
                got.load(Ordering::Relaxed) as usize == answered.len()
                    && twice.load(Ordering::Relaxed) == 0
            })
            .count();
        let dupes: u32 = self
            .per_member
            .iter()
            .map(|(_, t)| t.load(Ordering::Relaxed))
            .sum();
        Row {
            name,
            value: format!(
                "p50 {} / p99 {} / max {}",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&0))
            ),
            goal: "p99 < 100 ms".into(),
            note: format!(
                "{complete}/{} sent messages reached every member; {got_all}/{members} members \
                 got every message exactly once ({dupes} duplicates); frames of {} bytes{extra}",
                answered.len(),
                self.frame_bytes.load(Ordering::Relaxed),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_number_of_our_messages_only() {
        let ours = r#"{"type":"message.new","payload":{"content":"scale#42#"},"meta":{}}"#;
        assert_eq!(Track::number(ours), Some(42));
        let other = r#"{"type":"chat.updated","payload":{"content":"scale#42#"}}"#;
        assert_eq!(Track::number(other), None);
    }
}
