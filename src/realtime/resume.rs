//! The socket side of resume after reconnect (issue 16).
//!
//! A socket is registered with the hub (live events queue up) BEFORE it
//! reads the store, so nothing falls between the replay and the live
//! stream; the [`Cursor`] then drops the live events the replay already
//! sent and, because event numbers are dense, notices a live event that
//! overtook an earlier one (two publishers) or one that never came (a bus
//! gap) and reads the missing ones from the store first. What cannot be
//! filled closes the socket with 4010 "resume required"; a `since` that
//! cannot be served at all is answered by a first frame `sync.reset`.

use axum::extract::ws::Message;
use uuid::Uuid;

use super::direct::{send, SocketSink};
use super::event::{frame, kinds, Event};
use super::hub::CloseReason;
use super::store::{EventStore, Pos, Range, GEN, PAGE};

/// Store reads a fill retries (250 ms apart) before closing with 4010.
const FILL_RETRIES: u32 = 4;

/// Where a socket stands in its user's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Every event up to this number was sent, or predates the socket; 0:
    /// the store was empty when the socket started.
    last: u64,
    /// True once `last` was sent by this socket: an event at or below it is
    /// a duplicate. False right after connecting without `since`, where
    /// such an event is one that was stored just before the socket's start
    /// and published just after it, so it is still news.
    exact: bool,
    /// The position is unknown (the store could not be read): trust the
    /// first live event.
    blind: bool,
}

/// What to do with one live event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Deliver,
    Skip,
    /// Send the stored events `after+1 ..= upto` first (after 0: whatever
    /// the stream holds before `upto`), then this one.
    Fill {
        after: u64,
        upto: u64,
    },
}

/// Why a socket must stop.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The peer is gone (a write failed).
    Gone,
    /// Close with this code.
    Close(CloseReason),
}

impl Cursor {
    pub(super) fn fresh(head: Option<Pos>) -> Self {
        Self {
            last: head.map_or(0, |p| p.n),
            exact: false,
            blind: false,
        }
    }

    fn blind() -> Self {
        Self {
            last: 0,
            exact: false,
            blind: true,
        }
    }

    pub(super) fn at(pos: Pos) -> Self {
        Self {
            last: pos.n,
            exact: true,
            blind: false,
        }
    }

    /// Decides about one live event (its position, if it was stored).
    pub fn on_live(&mut self, pos: Option<Pos>) -> Step {
        // A position of another layout (an instance of the previous release
        // during a rolling deploy) is not in this store: just deliver.
        let Some(p) = pos.filter(|p| p.generation == GEN) else {
            return Step::Deliver;
        };
        if self.blind {
            *self = Self::at(p);
            return Step::Deliver;
        }
        if p.n <= self.last {
            return if self.exact {
                Step::Skip
            } else {
                Step::Deliver
            };
        }
        let after = self.last;
        *self = Self::at(p);
        if p.n == after + 1 {
            Step::Deliver
        } else {
            Step::Fill {
                after,
                upto: p.n - 1,
            }
        }
    }
}

/// Starts a socket: replays from `since` (or says `sync.reset`), or, with
/// no `since`, notes where the store stands so later gaps can be filled.
pub async fn open(
    store: &EventStore,
    user: Uuid,
    since: Option<&str>,
    socket: &mut SocketSink,
) -> Result<Cursor, Stop> {
    let Some(raw) = since.filter(|s| !s.is_empty()) else {
        return Ok(head_cursor(store, user).await);
    };
    if !store.enabled() {
        return reset(store, user, "disabled", socket).await;
    }
    let Some(pos) = Pos::parse(raw) else {
        return reset(store, user, "invalid_position", socket).await;
    };
    if pos.generation != GEN {
        // A position of the earlier store layout: that store is gone.
        return reset(store, user, "store_reset", socket).await;
    }
    let mut last = pos;
    let mut first = true;
    let mut sent = 0;
    loop {
        let page = store.range(user, last.n, None, first.then_some(pos)).await;
        let entries = match page {
            Ok(Range::Entries(v)) => v,
            Ok(Range::Reset) if first => return reset(store, user, "store_reset", socket).await,
            Ok(Range::Expired) if first => return reset(store, user, "expired", socket).await,
            Err(e) if first => {
                tracing::warn!(error = %e, %user, "resume store unreachable");
                return reset(store, user, "unavailable", socket).await;
            }
            // Trimmed or reset between two pages: part was sent, so the
            // client must come back from what it has.
            _ => return Err(Stop::Close(CloseReason::ResumeRequired)),
        };
        first = false;
        let full = entries.len() == PAGE;
        for s in entries {
            if s.pos.n != last.n + 1 {
                return Err(Stop::Close(CloseReason::ResumeRequired));
            }
            push(socket, frame(&s.json, s.unread, Some(s.pos))).await?;
            last = s.pos;
            sent += 1;
        }
        if !full {
            crate::infra::metrics::ws_replay("since", sent);
            return Ok(Cursor::at(last));
        }
    }
}

/// Sends the stored events a live one revealed as missing, or, with
/// `upto` None (the bus was lost), everything after the cursor.
pub async fn fill(
    store: &EventStore,
    user: Uuid,
    cursor: &mut Cursor,
    gap: Option<(u64, u64)>,
    socket: &mut SocketSink,
) -> Result<(), Stop> {
    if !store.enabled() {
        return Ok(()); // nothing is stored, so there is nothing to fill
    }
    let (mut next, upto) = match gap {
        Some((after, upto)) => (after, Some(upto)),
        None if cursor.blind => return Err(Stop::Close(CloseReason::ResumeRequired)),
        None => (cursor.last, None),
    };
    // From 0 the socket started before its stream existed: whatever the
    // stream holds first is the next event, and it may hold nothing yet.
    let from_start = next == 0;
    let mut sent = 0;
    loop {
        let entries = match range_retrying(store, user, next, upto).await {
            Ok(Range::Entries(v)) => v,
            Ok(_) => return Err(Stop::Close(CloseReason::ResumeRequired)),
            Err(e) => {
                tracing::warn!(error = %e, %user, "cannot fill a socket's gap; asking it to resume");
                return Err(Stop::Close(CloseReason::ResumeRequired));
            }
        };
        let full = entries.len() == PAGE;
        for s in entries {
            if s.pos.n != next + 1 && !(from_start && sent == 0) {
                return Err(Stop::Close(CloseReason::ResumeRequired));
            }
            push(socket, frame(&s.json, s.unread, Some(s.pos))).await?;
            next = s.pos.n;
            sent += 1;
        }
        if !full || upto.is_some_and(|u| next >= u) {
            break;
        }
    }
    if !from_start && upto.is_some_and(|u| next < u) {
        return Err(Stop::Close(CloseReason::ResumeRequired));
    }
    if gap.is_none() && next > cursor.last {
        // Catch-up: the socket is now exactly where the store ends.
        cursor.last = next;
        cursor.exact = true;
    }
    // A read from the start that found nothing before the live event was
    // no gap, just a socket meeting its stream's first event.
    if !(from_start && sent == 0) {
        crate::infra::metrics::ws_replay("fill", sent);
    }
    Ok(())
}

/// A fill usually follows a Redis reconnect, when the command connection
/// may still be re-establishing: a few short retries before giving up.
async fn range_retrying(
    store: &EventStore,
    user: Uuid,
    after: u64,
    upto: Option<u64>,
) -> redis::RedisResult<Range> {
    let mut attempt = 0;
    loop {
        match store.range(user, after, upto, None).await {
            Err(e) if attempt < FILL_RETRIES => {
                tracing::debug!(error = %e, attempt, "store read failed; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

async fn head_cursor(store: &EventStore, user: Uuid) -> Cursor {
    if !store.enabled() {
        return Cursor::blind();
    }
    match store.head(user).await {
        Ok(head) => Cursor::fresh(head),
        Err(e) => {
            tracing::warn!(error = %e, %user, "resume store unreachable; socket starts blind");
            Cursor::blind()
        }
    }
}

/// The first frame of a `since` that cannot be served. Its `meta.seq` is
/// the newest stored position, so a client that refetched over REST can
/// resume from here next time.
async fn reset(
    store: &EventStore,
    user: Uuid,
    reason: &'static str,
    socket: &mut SocketSink,
) -> Result<Cursor, Stop> {
    crate::infra::metrics::ws_sync_reset(reason);
    let (head, cursor) = match store.enabled() {
        true => match store.head(user).await {
            Ok(head) => (head, Cursor::fresh(head)),
            Err(_) => (None, Cursor::blind()),
        },
        false => (None, Cursor::blind()),
    };
    let mut event = Event::new(
        kinds::SYNC_RESET,
        serde_json::json!({ "reason": reason }),
        None,
        None,
    );
    event.meta.seq = head.map(|p| p.to_string());
    push(socket, event.to_json()).await?;
    Ok(cursor)
}

async fn push(socket: &mut SocketSink, json: String) -> Result<(), Stop> {
    if send(socket, Message::Text(json.into())).await {
        Ok(())
    } else {
        Err(Stop::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> Option<Pos> {
        Some(Pos {
            generation: GEN,
            n,
            ms: 1,
        })
    }

    #[test]
    fn resumed_cursor_drops_duplicates_and_fills_gaps() {
        let mut c = Cursor::at(p(10).unwrap());
        assert_eq!(c.on_live(p(9)), Step::Skip);
        assert_eq!(c.on_live(p(10)), Step::Skip);
        assert_eq!(c.on_live(p(11)), Step::Deliver);
        assert_eq!(
            c.on_live(p(14)),
            Step::Fill {
                after: 11,
                upto: 13
            }
        );
        // The overtaken ones arrive late: already sent by the fill.
        assert_eq!(c.on_live(p(12)), Step::Skip);
        assert_eq!(c.on_live(None), Step::Deliver);
    }

    #[test]
    fn fresh_cursor_delivers_what_was_stored_just_before_it() {
        let mut c = Cursor::fresh(p(5));
        assert_eq!(c.on_live(p(5)), Step::Deliver);
        assert_eq!(c.on_live(p(4)), Step::Deliver);
        assert_eq!(c.on_live(p(6)), Step::Deliver);
        assert_eq!(c.on_live(p(6)), Step::Skip);
    }

    #[test]
    fn a_store_made_after_the_socket_is_read_from_its_start() {
        // A new stream's first number is its creation ms × 1000.
        let first = 1_767_400_000_123_000;
        let mut c = Cursor::fresh(None);
        assert_eq!(
            c.on_live(p(first + 1)),
            Step::Fill {
                after: 0,
                upto: first
            }
        );
        assert_eq!(c.on_live(p(first)), Step::Skip);
        assert_eq!(c.on_live(p(first + 2)), Step::Deliver);
    }

    #[test]
    fn a_store_made_anew_under_a_socket_is_a_gap() {
        // The old stream ended at 50; the new one starts far above it.
        let mut c = Cursor::at(p(50).unwrap());
        let first = 1_767_400_000_123_000;
        assert_eq!(
            c.on_live(p(first)),
            Step::Fill {
                after: 50,
                upto: first - 1
            }
        );
    }

    #[test]
    fn positions_of_another_layout_are_delivered_and_not_followed() {
        let mut c = Cursor::at(p(7).unwrap());
        let old = Some(Pos {
            generation: 1_767_400_000_123_456,
            n: 3,
            ms: 9,
        });
        assert_eq!(c.on_live(old), Step::Deliver);
        assert_eq!(c.on_live(p(8)), Step::Deliver);
    }

    #[test]
    fn blind_cursor_trusts_the_first_event() {
        let mut c = Cursor::blind();
        assert_eq!(c.on_live(p(40)), Step::Deliver);
        assert_eq!(c.on_live(p(40)), Step::Skip);
        assert_eq!(c.on_live(p(41)), Step::Deliver);
    }
}
