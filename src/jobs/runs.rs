//! What the scheduler's runs leave for operators: the last run of each job
//! in `scheduler_runs` (read by `atoitalk status`) and the metrics, served
//! by the scheduler process on `SCHEDULER_METRICS_PORT`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::get;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Job, JobReport};

/// Longest error text kept for a failed run.
const MAX_ERROR: usize = 500;

/// Records a finished run (metrics and `scheduler_runs`); a skipped run
/// (another holder of the lock) only counts in the metrics.
pub(super) async fn record(
    db: &PgPool,
    job: Job,
    result: &anyhow::Result<JobReport>,
    elapsed: Duration,
) {
    let outcome = result.as_ref().ok().map(|r| (r.ran, r.deleted, r.failed));
    crate::infra::metrics::job_run(job.name(), outcome, elapsed);
    if matches!(outcome, Some((false, _, _))) {
        return;
    }
    let (deleted, failed, error) = match result {
        Ok(r) => (r.deleted, r.failed, None),
        Err(e) => (
            0,
            0,
            Some(format!("{e:#}").chars().take(MAX_ERROR).collect::<String>()),
        ),
    };
    let res = sqlx::query(
        "INSERT INTO scheduler_runs (job, finished_at, duration_ms, ok, deleted, failed, error) \
         VALUES ($1, now(), $2, $3, $4, $5, $6) \
         ON CONFLICT (job) DO UPDATE SET finished_at = EXCLUDED.finished_at, \
           duration_ms = EXCLUDED.duration_ms, ok = EXCLUDED.ok, deleted = EXCLUDED.deleted, \
           failed = EXCLUDED.failed, error = EXCLUDED.error",
    )
    .bind(job.name())
    .bind(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    .bind(error.is_none())
    .bind(i64::try_from(deleted).unwrap_or(i64::MAX))
    .bind(i64::try_from(failed).unwrap_or(i64::MAX))
    .bind(error)
    .execute(db)
    .await;
    if let Err(e) = res {
        tracing::warn!(job = job.name(), error = %e, "could not record the job run");
    }
}

/// The last recorded run of a job.
#[derive(Debug, sqlx::FromRow)]
pub struct LastRun {
    pub job: String,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub ok: bool,
    pub deleted: i64,
    pub failed: i64,
    pub error: Option<String>,
}

pub async fn last_runs(db: &PgPool) -> Result<Vec<LastRun>, sqlx::Error> {
    sqlx::query_as(
        "SELECT job, finished_at, duration_ms, ok, deleted, failed, error \
         FROM scheduler_runs ORDER BY job",
    )
    .fetch_all(db)
    .await
}

/// Binds the scheduler's `/metrics` (and `/healthz`) listener on `port`
/// and serves it until `stop`.
pub(super) async fn serve_metrics(
    port: u16,
    token: Option<String>,
    db: PgPool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for scheduler metrics: {e}; set SCHEDULER_METRICS_PORT to a free port (0 = off)"
        )
    })?;
    tracing::info!(%addr, "scheduler metrics listening");
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| async move {
                crate::http::metrics::exposition(token.as_deref(), &headers, Some(&db))
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
    }))
}
