//! Prometheus metrics: the process-wide recorder and every instrumentation
//! hook, so the other layers only call one function per event and every
//! metric name and label set is defined here.
//!
//! Labels are bounded by construction: route templates (never raw paths),
//! known HTTP methods, status classes, close codes, bucket/job/backend
//! names and event types. No user, chat or message id ever becomes a label.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) of request, acquire and lag timings.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder's handle, installing the recorder on first use. The
/// recorder is global per process, so every server in a process (the
/// integration tests run many) reports into the same registry.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        // Drains histogram buffers now and then, as the exporter requires
        // when it runs without its own HTTP listener.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        handle
    })
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    handle().render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by route template, method and status class"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    describe_gauge!(
        "ws_open_sockets",
        "WebSocket connections open on this instance"
    );
    describe_counter!("ws_connects_total", "WebSocket connections accepted");
    describe_counter!(
        "ws_disconnects_total",
        "WebSocket connections ended, by the close code the server sent (none: the client left)"
    );
    describe_counter!(
        "ws_events_delivered_total",
        "Events written to sockets, by event type"
    );
    describe_counter!(
        "ws_direct_writes_total",
        "Live frames offered to a socket: written straight to it (`written`), \
         accepted but left for its task to flush (`unflushed`), or queued for its task \
         (`queued`: it was busy, had frames waiting, or the frame revealed a gap)"
    );
    describe_counter!(
        "ws_send_queue_drops_total",
        "Events dropped because a socket's send queue was full"
    );
    describe_counter!(
        "ws_slow_consumer_disconnects_total",
        "Sockets closed because they could not keep up"
    );
    describe_counter!(
        "bus_published_total",
        "Messages published on the event bus, by format and result"
    );
    describe_counter!(
        "bus_received_total",
        "Event-bus messages received by this instance, by format"
    );
    describe_histogram!(
        "bus_delivery_lag_seconds",
        Unit::Seconds,
        "Time from an event's creation to its local delivery"
    );
    describe_counter!("bus_reconnects_total", "Event-bus subscriber reconnections");
    describe_gauge!(
        "db_pool_connections",
        "PostgreSQL pool connections (sampled at scrape)"
    );
    describe_gauge!(
        "db_pool_idle_connections",
        "Idle PostgreSQL pool connections (sampled at scrape)"
    );
    describe_gauge!(
        "db_pool_waiters",
        "Tasks waiting for a PostgreSQL pool connection (counted by infra::db::acquire/begin)"
    );
    describe_histogram!(
        "db_pool_acquire_seconds",
        Unit::Seconds,
        "Time to acquire a pooled PostgreSQL connection (infra::db::acquire/begin and a 10 s probe)"
    );
    describe_counter!(
        "redis_command_errors_total",
        "Redis commands that failed, by path (request, bus, presence, typing, resume, instances, replica)"
    );
    describe_counter!(
        "ws_resume_replays_total",
        "Stored events replays served to sockets, by kind (since: a reconnect's ?since=, fill: a gap in the live stream)"
    );
    describe_counter!(
        "ws_resume_events_replayed_total",
        "Events sent to sockets from the resume store, by kind"
    );
    describe_counter!(
        "ws_sync_resets_total",
        "sync.reset frames sent instead of a replay, by reason"
    );
    describe_counter!(
        "rate_limit_rejections_total",
        "Requests refused with 429, by bucket"
    );
    describe_counter!("emails_total", "Emails handed to the mailer, by result");
    describe_counter!(
        "storage_operations_total",
        "Object-storage operations by backend, operation and result"
    );
    describe_counter!(
        "scheduler_job_runs_total",
        "Scheduler job runs by job and result (ok, error, skipped)"
    );
    describe_gauge!(
        "scheduler_job_last_run_timestamp_seconds",
        "Unix time the job last finished a run"
    );
    describe_gauge!(
        "scheduler_job_last_duration_seconds",
        Unit::Seconds,
        "Duration of the job's last run"
    );
    describe_counter!(
        "scheduler_job_deleted_total",
        "Rows/objects the job deleted"
    );
    describe_counter!(
        "scheduler_job_item_failures_total",
        "Items the job could not delete (retried next run)"
    );
}

/// The method label: the standard methods, anything else as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `2xx` … `5xx` (`1xx` for the WebSocket upgrade).
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// One finished HTTP request; `route` is the matched template or
/// `unmatched`.
pub fn http_request(route: &str, method: &axum::http::Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    counter!("http_requests_total", "route" => route.to_string(), "method" => method, "status" => status_class(status))
        .increment(1);
    histogram!("http_request_duration_seconds", "route" => route.to_string(), "method" => method)
        .record(elapsed.as_secs_f64());
}

pub fn ws_opened() {
    gauge!("ws_open_sockets").increment(1.0);
    counter!("ws_connects_total").increment(1);
}

/// A socket ended; `code` is the close code the server sent, if any.
pub fn ws_closed(code: Option<u16>) {
    gauge!("ws_open_sockets").decrement(1.0);
    let label = code.map_or_else(|| "none".to_string(), |c| c.to_string());
    counter!("ws_disconnects_total", "code" => label).increment(1);
    if code == Some(crate::realtime::CloseReason::SlowConsumer.code()) {
        counter!("ws_slow_consumer_disconnects_total").increment(1);
    }
}

/// An event written to a socket.
pub fn ws_event_delivered(json: &str) {
    ws_event_delivered_kind(event_kind(json));
}

pub fn ws_event_delivered_kind(kind: &'static str) {
    counter!("ws_events_delivered_total", "type" => kind).increment(1);
}

/// `outcome`: `written`, `unflushed` or `queued` (see the description).
pub fn ws_direct(outcome: &'static str) {
    counter!("ws_direct_writes_total", "outcome" => outcome).increment(1);
}

pub fn ws_queue_drop() {
    counter!("ws_send_queue_drops_total").increment(1);
}

/// `format`: `reference` (one message per recipient), `batch` or `control`;
/// a failed publish is also a Redis command error.
pub fn bus_published(format: &'static str, messages: usize, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!("bus_published_total", "format" => format, "result" => result)
        .increment(messages as u64);
    if !ok {
        redis_error("bus");
    }
}

/// A bus message arrived; `event_json` (if an event) gives the lag.
pub fn bus_received(format: &'static str, event_json: Option<&str>) {
    counter!("bus_received_total", "format" => format).increment(1);
    if let Some(ts) = event_json.and_then(event_timestamp_ms) {
        let lag = chrono::Utc::now().timestamp_millis() - ts;
        if lag >= 0 {
            histogram!("bus_delivery_lag_seconds").record(lag as f64 / 1000.0);
        }
    }
}

pub fn bus_reconnect() {
    counter!("bus_reconnects_total").increment(1);
}

/// Pool figures, sampled when `/metrics` is scraped.
pub fn db_pool(size: u32, idle: usize, acquire: Option<Duration>) {
    gauge!("db_pool_connections").set(f64::from(size));
    gauge!("db_pool_idle_connections").set(idle as f64);
    if let Some(d) = acquire {
        histogram!("db_pool_acquire_seconds").record(d.as_secs_f64());
    }
}

/// One task waiting in `PgPool::acquire`. sqlx keeps its waiters inside
/// the pool's semaphore and exposes no count, so `infra::db::acquire` and
/// `infra::db::begin` count them: +1 before the wait, -1 when it ends
/// (also when the waiting request is cancelled, hence a drop guard).
pub struct PoolWait {
    started: std::time::Instant,
}

impl PoolWait {
    pub fn start() -> Self {
        gauge!("db_pool_waiters").increment(1.0);
        Self {
            started: std::time::Instant::now(),
        }
    }

    /// The wait ended; a connection was handed out when `acquired`.
    pub fn done(self, acquired: bool) {
        if acquired {
            histogram!("db_pool_acquire_seconds").record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for PoolWait {
    fn drop(&mut self) {
        gauge!("db_pool_waiters").decrement(1.0);
    }
}

/// Every 10 s until `stop`: how long taking a connection from `db` takes,
/// with the pool's size and idle count, so the figures move while the
/// instance is idle too. Not a waiter: nobody is kept waiting by it.
pub fn spawn_pool_probe(db: sqlx::PgPool, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                _ = stop.changed() => return,
            }
            let started = std::time::Instant::now();
            let acquired = db.acquire().await.is_ok();
            db_pool(
                db.size(),
                db.num_idle(),
                acquired.then(|| started.elapsed()),
            );
        }
    });
}

/// A failed Redis command; `path` is one of the fixed names in the
/// description above.
pub fn redis_error(path: &'static str) {
    counter!("redis_command_errors_total", "path" => path).increment(1);
}

/// `kind`: `since` (a reconnect's replay) or `fill` (a gap in the live
/// stream read from the store); `events` were sent.
pub fn ws_replay(kind: &'static str, events: usize) {
    counter!("ws_resume_replays_total", "kind" => kind).increment(1);
    counter!("ws_resume_events_replayed_total", "kind" => kind).increment(events as u64);
}

/// A `sync.reset` sent; `reason` is one of resume's fixed reasons.
pub fn ws_sync_reset(reason: &'static str) {
    counter!("ws_sync_resets_total", "reason" => reason).increment(1);
}

pub fn rate_limited(bucket: &'static str) {
    counter!("rate_limit_rejections_total", "bucket" => bucket).increment(1);
}

pub fn email(sent: bool) {
    counter!("emails_total", "result" => if sent { "sent" } else { "failed" }).increment(1);
}

pub fn storage_op(backend: &'static str, op: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!("storage_operations_total", "backend" => backend, "op" => op, "result" => result)
        .increment(1);
}

/// What a scheduler run did; `outcome` is `None` when the run failed.
pub fn job_run(job: &'static str, outcome: Option<(bool, u64, u64)>, elapsed: Duration) {
    let result = match outcome {
        None => "error",
        Some((false, _, _)) => "skipped",
        Some((true, _, _)) => "ok",
    };
    counter!("scheduler_job_runs_total", "job" => job, "result" => result).increment(1);
    if let Some((true, deleted, failed)) = outcome {
        counter!("scheduler_job_deleted_total", "job" => job).increment(deleted);
        counter!("scheduler_job_item_failures_total", "job" => job).increment(failed);
    }
    if result != "skipped" {
        gauge!("scheduler_job_last_run_timestamp_seconds", "job" => job)
            .set(chrono::Utc::now().timestamp() as f64);
        gauge!("scheduler_job_last_duration_seconds", "job" => job).set(elapsed.as_secs_f64());
    }
}

/// The `type` of a serialised event (`{"type":"…",…}`, the first field):
/// the server's own type names only, so the label set stays bounded.
/// The `type` label an event's JSON is counted under.
pub fn event_kind(json: &str) -> &'static str {
    // Runs once per delivered frame: a lookup in the fixed list, no allocation.
    let t = json
        .strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split('"').next());
    t.and_then(|t| {
        crate::realtime::event::kinds::ALL
            .into_iter()
            .find(|k| *k == t)
    })
    .unwrap_or("other")
}

/// `meta.timestamp` (Unix ms) of a serialised event.
fn event_timestamp_ms(json: &str) -> Option<i64> {
    let at = json.rfind("\"timestamp\":")? + "\"timestamp\":".len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_are_read_from_the_wire_form() {
        let e = crate::realtime::Event::new(
            "message.new",
            serde_json::json!({"timestamp": "x", "type": "evil-uuid"}),
            None,
            None,
        );
        let json = e.to_json();
        assert_eq!(event_kind(&json), "message.new");
        assert_eq!(event_timestamp_ms(&json), Some(e.meta.timestamp));
        assert_eq!(event_kind("{\"type\":\"0190a1b2-c3d4\"}"), "other");
        assert_eq!(event_kind("garbage"), "other");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
