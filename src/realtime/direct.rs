//! Write-through delivery (issue 21): an idle socket's task lends its
//! writer to the connection's [`Direct`] slot, and the instance's writer
//! lanes (`hub::delivery`, for a delivery to many sockets) write the frame
//! to the socket themselves, without waking the task. Per frame, the task's
//! wake-up, its queue and its `select!` cost about as much as the write;
//! the plain floor without them (`scale floor --raw`) spends 30-40 % less.
//!
//! The task takes its writer back whenever it has anything to do with it:
//! queued frames, a gap to fill from the store, a ping, a close. Order
//! holds because a frame is written directly only when the writer is lent
//! AND nothing waits in the queue; everything else is queued under the
//! same lock the task lends under, after it saw its queue empty.
//!
//! Frames are offered outside tokio's cooperative budget (see
//! `hub::delivery`, which also spreads them over the runtime's workers).
//!
//! A direct write never waits: a socket that is not ready, a frame left
//! unflushed, or a frame that reveals a gap goes to the task, which
//! handles it as before (deadline, gap fill, slow consumer).

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::stream::SplitSink;
use futures::{Sink, SinkExt};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::resume::{Cursor, Step};
use super::store::Pos;

/// The write half of a client's socket.
pub type SocketSink = SplitSink<WebSocket, Message>;

/// Deadline for writing one frame.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// What writes to a socket: its sink and where it stands in its user's
/// resume store (what it sent decides what a next event is).
pub struct Writer<S = SocketSink> {
    pub sink: S,
    pub cursor: Cursor,
}

/// What became of a frame offered for a direct write.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// On the socket (or a duplicate the socket had already sent).
    Done,
    /// Accepted, but part of it still waits in the sink: the task flushes.
    Unflushed,
    /// Not written: it goes to the queue.
    No(Utf8Bytes),
}

impl<S: Sink<Message> + Unpin> Writer<S> {
    /// Writes one live frame if that can be done at once and in order.
    fn write_now(&mut self, data: Utf8Bytes, pos: Option<Pos>) -> Written {
        let mut next = self.cursor.clone();
        match next.on_live(pos) {
            Step::Skip => {
                self.cursor = next;
                return Written::Done;
            }
            // Filling reads the store: the task's work.
            Step::Fill { .. } => return Written::No(data),
            Step::Deliver => {}
        }
        // Nobody is woken by this context: a write that cannot finish now
        // is handed to the task, which polls again with its own.
        let mut cx = Context::from_waker(Waker::noop());
        let mut sink = Pin::new(&mut self.sink);
        if !matches!(sink.as_mut().poll_ready(&mut cx), Poll::Ready(Ok(()))) {
            return Written::No(data);
        }
        let kind = crate::infra::metrics::event_kind(&data);
        if sink.as_mut().start_send(Message::Text(data)).is_err() {
            // The socket is gone; the task's next write finds out and ends.
            return Written::Unflushed;
        }
        self.cursor = next;
        crate::infra::metrics::ws_event_delivered_kind(kind);
        match sink.poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Written::Done,
            Poll::Ready(Err(_)) | Poll::Pending => Written::Unflushed,
        }
    }
}

struct State<S> {
    /// The writer, while the task is idle and has lent it.
    lent: Option<Writer<S>>,
    /// Frames wait for the task (queued, or unflushed in the sink): no
    /// direct write until it took the writer back.
    owed: bool,
}

/// One connection's write-through slot.
pub struct Direct<S = SocketSink> {
    state: Mutex<State<S>>,
    /// Tells the task to take its writer back and flush it.
    poke: Notify,
}

impl<S> Default for Direct<S> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                lent: None,
                owed: false,
            }),
            poke: Notify::new(),
        }
    }
}

impl<S: Sink<Message> + Unpin> Direct<S> {
    /// Delivers a live frame: written now when the writer is lent and
    /// nothing is owed, else handed to `queue` (called under the lock, so
    /// it is ordered against [`Direct::lend`]).
    /// With `now` false the frame is queued all the same (see
    /// `hub::delivery` for when), in order with the direct writes.
    pub fn offer(
        &self,
        data: Utf8Bytes,
        pos: Option<Pos>,
        now: bool,
        queue: impl FnOnce(Utf8Bytes),
    ) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(writer) = state.lent.as_mut().filter(|_| !state.owed) else {
            crate::infra::metrics::ws_direct("queued");
            return queue(data);
        };
        let written = if now {
            writer.write_now(data, pos)
        } else {
            Written::No(data)
        };
        crate::infra::metrics::ws_direct(match written {
            Written::Done => "written",
            Written::Unflushed => "unflushed",
            Written::No(_) => "queued",
        });
        match written {
            Written::Done => {}
            Written::Unflushed => {
                state.owed = true;
                self.poke.notify_one();
            }
            Written::No(data) => {
                // The queue's wake-up brings the task, which takes the writer.
                state.owed = true;
                queue(data);
            }
        }
    }

    /// Lends the idle task's writer, unless `queue_empty` says frames wait
    /// for it (then the writer comes back).
    pub fn lend(
        &self,
        writer: Writer<S>,
        queue_empty: impl FnOnce() -> bool,
    ) -> Result<(), Writer<S>> {
        let mut state = self.lock();
        if !queue_empty() {
            return Err(writer);
        }
        state.lent = Some(writer);
        state.owed = false;
        Ok(())
    }

    /// Takes the writer back (None when it is not lent).
    pub fn reclaim(&self) -> Option<Writer<S>> {
        let mut state = self.lock();
        state.owed = false;
        state.lent.take()
    }

    /// Resolves when a direct write left something for the task to flush.
    pub fn poked(&self) -> Notified<'_> {
        self.poke.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<S>> {
        // Every critical section leaves the state whole, so recover.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends one frame within [`WRITE_DEADLINE`]. Most writes complete at
/// once; only one that has to wait for the socket arms the deadline's timer.
pub async fn send<S: Sink<Message> + Unpin>(sink: &mut S, msg: Message) -> bool {
    let mut sending = std::pin::pin!(sink.send(msg));
    if let Poll::Ready(sent) = futures::poll!(sending.as_mut()) {
        return sent.is_ok();
    }
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, sending).await,
        Ok(Ok(()))
    )
}

/// Writes out what a direct write left in the sink, within [`WRITE_DEADLINE`].
pub async fn flush<S: Sink<Message> + Unpin>(sink: &mut S) -> bool {
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, sink.flush()).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests;
