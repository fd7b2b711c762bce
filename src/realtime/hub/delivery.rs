//! The instance's socket writers (write-through delivery, issue 21): one
//! task per runtime worker, each owning a fixed share of the connections
//! (by connection id), writes the frames it is handed straight to their
//! sockets ([`super::super::direct`]).
//!
//! One lane per worker, not the bus subscriber itself: written from the
//! subscriber's one task, a 1,000-member group at 100 messages a second
//! regressed from p99 57-81 ms to 329-504 ms (one thread for all of an
//! instance's writes), and waiting for the writes of a message before
//! reading the next lost the overlap between messages. A connection's
//! frames always take its one lane, in order; the subscriber only waits
//! when a lane already holds [`BACKLOG`] batches.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::{Conn, Outbound};

type Frames = Vec<(Arc<Conn>, Outbound)>;

/// The default of `WS_DIRECT_WRITE_MIN_SOCKETS`: a delivery to fewer of an
/// instance's sockets is queued for the sockets' tasks as before; larger
/// ones are written directly.
/// Measured: a 10,000-member group (5,000 sockets here) at 10 msg/s spent
/// 22 % less server CPU written directly, p99 203 against 324 ms; a
/// 1,000-member group at 100 msg/s had a wider p99 (82-301 against 69-84 ms).
pub const DIRECT_WRITE_MIN_SOCKETS: usize = 2048;

/// Batches a lane holds before a delivery waits for it (bounded, so a
/// lane that falls behind slows the bus reader instead of growing).
const BACKLOG: usize = 64;

enum Job {
    /// The frames, and whether to write them directly.
    Frames(Frames, bool),
    /// Answered once every batch before it was written.
    Barrier(oneshot::Sender<()>),
}

#[derive(Default)]
pub(super) struct Writers {
    /// Empty on a one-worker runtime: frames are written in place.
    lanes: OnceLock<Vec<mpsc::Sender<Job>>>,
    /// Deliveries to this many sockets or more are written directly (0 = none).
    direct_from: usize,
}

impl Writers {
    pub(super) fn new(direct_from: usize) -> Self {
        Self {
            lanes: OnceLock::new(),
            direct_from,
        }
    }

    /// Started on first use, inside the runtime that delivers.
    fn lanes(&self) -> &[mpsc::Sender<Job>] {
        self.lanes.get_or_init(|| {
            let workers =
                tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
            if workers < 2 {
                return Vec::new();
            }
            (0..workers)
                .map(|_| {
                    let (tx, rx) = mpsc::channel(BACKLOG);
                    tokio::spawn(lane(rx));
                    tx
                })
                .collect()
        })
    }

    /// Hands the frames to their connections' lanes.
    pub(super) async fn write(&self, frames: Frames) {
        if frames.is_empty() {
            return;
        }
        let now = self.direct_from > 0 && frames.len() >= self.direct_from;
        let lanes = self.lanes();
        if lanes.is_empty() {
            return offer_all(frames, now, false).await;
        }
        let mut frames = frames;
        if !now {
            // Queued in place, saving the lane's hop (measured: a wider p99
            // for a 1,000-member group at 100 msg/s), unless a lane still
            // holds earlier frames of that connection: those go first.
            let (free, behind): (Frames, Frames) = frames
                .into_iter()
                .partition(|(conn, _)| conn.in_lane.load(Ordering::Acquire) == 0);
            offer_all(free, false, false).await;
            frames = behind;
            if frames.is_empty() {
                return;
            }
        }
        let n = lanes.len() as u64;
        let mut parts: Vec<Frames> = lanes.iter().map(|_| Vec::new()).collect();
        for (conn, out) in frames {
            if let Some(part) = parts.get_mut((conn.id % n) as usize) {
                conn.in_lane.fetch_add(1, Ordering::AcqRel);
                part.push((conn, out));
            }
        }
        for (lane, part) in lanes.iter().zip(parts) {
            // A lane is gone only when the runtime shuts down.
            if !part.is_empty() && lane.send(Job::Frames(part, now)).await.is_err() {
                tracing::debug!("socket writer gone; frames dropped at shutdown");
            }
        }
    }

    /// Waits until every lane wrote what it held when this was called.
    pub(super) async fn settle(&self) {
        let mut acks = Vec::new();
        for lane in self.lanes() {
            let (tx, rx) = oneshot::channel();
            if lane.send(Job::Barrier(tx)).await.is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
    }
}

async fn lane(mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Frames(frames, now) => offer_all(frames, now, true).await,
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Outside tokio's cooperative budget: every socket write spends from it,
/// and once a task's 128 units are gone each further write reports "not
/// ready", so a 5,000-socket batch wrote 128 frames directly and handed
/// the rest to their sockets' tasks (measured: 7,532 written, 218,030 left).
async fn offer_all(frames: Frames, now: bool, from_lane: bool) {
    tokio::task::unconstrained(async {
        for (conn, out) in frames {
            conn.offer(out, now);
            if from_lane {
                conn.in_lane.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })
    .await;
}
