use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::realtime::store::GEN;

/// A sink that writes what it is given into `sent` when flushed, or holds
/// it (`stuck`) as a socket whose buffer is full would.
#[derive(Default)]
struct Probe {
    sent: Vec<String>,
    held: Vec<String>,
    stuck: Arc<AtomicBool>,
}

impl Sink<Message> for Probe {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), ()> {
        if let Message::Text(t) = item {
            self.held.push(t.to_string());
        }
        Ok(())
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        if self.stuck.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let held = std::mem::take(&mut self.held);
        self.sent.extend(held);
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

impl Direct<Probe> {
    fn offer_now(&self, data: Utf8Bytes, pos: Option<Pos>, queue: impl FnOnce(Utf8Bytes)) {
        self.offer(data, pos, true, queue);
    }
}

fn at(n: u64) -> Option<Pos> {
    Some(Pos {
        generation: GEN,
        n,
        ms: 1,
    })
}

fn lent(direct: &Direct<Probe>, stuck: &Arc<AtomicBool>, last: u64) {
    let writer = Writer {
        sink: Probe {
            stuck: stuck.clone(),
            ..Probe::default()
        },
        cursor: Cursor::at(at(last).expect("a position")),
    };
    assert!(direct.lend(writer, || true).is_ok());
}

#[test]
fn a_lent_writer_takes_frames_in_order_without_the_queue() {
    let direct = Direct::<Probe>::default();
    let stuck = Arc::default();
    lent(&direct, &stuck, 10);
    let mut queued = Vec::new();
    direct.offer_now("a".into(), at(11), |d| queued.push(d.to_string()));
    direct.offer_now("dup".into(), at(11), |d| queued.push(d.to_string()));
    direct.offer_now("typing".into(), None, |d| queued.push(d.to_string()));
    direct.offer_now("b".into(), at(12), |d| queued.push(d.to_string()));
    assert!(queued.is_empty(), "{queued:?}");
    let w = direct.reclaim().expect("still lent");
    assert_eq!(w.sink.sent, ["a", "typing", "b"]);
    assert_eq!(w.cursor, Cursor::at(at(12).expect("a position")));
}

#[test]
fn without_a_lent_writer_every_frame_is_queued() {
    let direct = Direct::<Probe>::default();
    let mut queued = Vec::new();
    direct.offer_now("a".into(), at(1), |d| queued.push(d.to_string()));
    assert_eq!(queued, ["a"]);
    assert!(direct.reclaim().is_none());
}

#[test]
fn a_gap_goes_to_the_task_and_everything_after_it_waits_behind() {
    let direct = Direct::<Probe>::default();
    let stuck = Arc::default();
    lent(&direct, &stuck, 10);
    let mut queued = Vec::new();
    direct.offer_now("c".into(), at(13), |d| queued.push(d.to_string()));
    // Deliverable at once on its own, but it must not overtake "c".
    direct.offer_now("typing".into(), None, |d| queued.push(d.to_string()));
    assert_eq!(queued, ["c", "typing"]);
    let w = direct.reclaim().expect("still lent");
    assert!(w.sink.sent.is_empty());
    // The cursor is the task's to move: the fill starts after 10.
    assert_eq!(w.cursor, Cursor::at(at(10).expect("a position")));
}

#[tokio::test]
async fn an_unflushed_frame_pokes_the_task_and_later_ones_queue() {
    let direct = Direct::<Probe>::default();
    let stuck = Arc::new(AtomicBool::new(true));
    lent(&direct, &stuck, 0);
    let mut poked = std::pin::pin!(direct.poked());
    assert!(futures::poll!(poked.as_mut()).is_pending());
    let mut queued = Vec::new();
    direct.offer_now("a".into(), at(1), |d| queued.push(d.to_string()));
    assert!(queued.is_empty(), "accepted by the sink");
    assert!(
        futures::poll!(poked.as_mut()).is_ready(),
        "the task is told to flush"
    );
    direct.offer_now("b".into(), at(2), |d| queued.push(d.to_string()));
    assert_eq!(queued, ["b"]);
    let w = direct.reclaim().expect("still lent");
    assert_eq!(w.sink.held, ["a"]);
}

#[tokio::test]
async fn the_writer_is_not_lent_while_frames_wait_and_is_lent_again_after() {
    let direct = Direct::<Probe>::default();
    let stuck = Arc::default();
    lent(&direct, &stuck, 0);
    let w = direct.reclaim().expect("lent");
    let mut w = direct.lend(w, || false).expect_err("frames wait: kept");
    let mut queued = Vec::new();
    direct.offer_now("a".into(), at(1), |d| queued.push(d.to_string()));
    assert_eq!(queued, ["a"], "not lent: queued");
    // The task sends "a" from its queue, then lends again.
    assert_eq!(w.cursor.on_live(at(1)), Step::Deliver);
    assert!(direct.lend(w, || true).is_ok());
    direct.offer_now("b".into(), at(2), |d| queued.push(d.to_string()));
    assert_eq!(queued, ["a"], "lent and owed nothing: written");
    let mut w = direct.reclaim().expect("lent");
    assert!(flush(&mut w.sink).await);
    assert_eq!(w.sink.sent, ["b"]);
}
