//! The scheduler: five cleanup jobs on cron schedules. Each run takes a
//! Postgres advisory lock so two schedulers (or a manual `jobs run`) never
//! run the same job at once.

mod audit_cleanup;
mod entity_cleanup;
mod idempotency_cleanup;
mod media_cleanup;
mod private_chat_gc;
pub mod runs;
mod stale_objects;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;

use crate::config::Config;
use crate::infra::storage::Storage;

/// Rows handled per statement: keeps transactions and locks short.
pub const BATCH: i64 = 500;

/// Runs one batch (a `DELETE … LIMIT BATCH`) until a batch comes back
/// short; returns the rows deleted in all.
async fn delete_batches<F, Fut>(mut batch: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut deleted = 0;
    loop {
        let n = batch().await?;
        deleted += n;
        if n < BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// The scheduler's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    EntityCleanup,
    PrivateChatGc,
    MediaCleanup,
    /// Expired pending uploads only, on a short schedule, so abandoned
    /// uploads free their storage soon after their URL expires.
    PendingUploadSweep,
    /// `Idempotency-Key` records of sends older than their 24 h window.
    IdempotencyKeyCleanup,
    /// Admin audit entries past `AUDIT_RETENTION_DAYS`.
    AuditCleanup,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::EntityCleanup,
        Job::PrivateChatGc,
        Job::MediaCleanup,
        Job::PendingUploadSweep,
        Job::IdempotencyKeyCleanup,
        Job::AuditCleanup,
    ];

    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|j| j.name() == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown job {name:?}; use one of: entity-cleanup, private-chat-gc, media-cleanup, pending-upload-sweep, idempotency-key-cleanup, audit-cleanup"
                )
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Job::EntityCleanup => "entity-cleanup",
            Job::PrivateChatGc => "private-chat-gc",
            Job::MediaCleanup => "media-cleanup",
            Job::PendingUploadSweep => "pending-upload-sweep",
            Job::IdempotencyKeyCleanup => "idempotency-key-cleanup",
            Job::AuditCleanup => "audit-cleanup",
        }
    }

    /// The advisory-lock key that serialises runs of this job.
    pub fn lock_key(self) -> i64 {
        // Fixed, distinct advisory-lock keys ("ATOI" + job number).
        0x4154_4F49_0000 + self as i64
    }

    fn cron(self, cfg: &Config) -> &str {
        match self {
            Job::EntityCleanup => &cfg.entity_cleanup_cron,
            Job::PrivateChatGc => &cfg.private_chat_cleanup_cron,
            Job::MediaCleanup => &cfg.media_cleanup_cron,
            Job::PendingUploadSweep => &cfg.pending_upload_sweep_cron,
            Job::IdempotencyKeyCleanup => &cfg.idempotency_key_cleanup_cron,
            Job::AuditCleanup => &cfg.audit_cleanup_cron,
        }
    }
}

/// Expired pending uploads, then upload keys whose URL has expired.
async fn sweep_uploads(ctx: &JobContext) -> anyhow::Result<(u64, u64)> {
    let (deleted, failed) = media_cleanup::run(ctx, true).await?;
    let (stale, stale_failed) = stale_objects::run(ctx).await?;
    Ok((deleted + stale, failed + stale_failed))
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    pub job: &'static str,
    /// False when another run held the lock, so this one did nothing.
    pub ran: bool,
    pub deleted: u64,
    pub failed: u64,
    pub millis: u128,
}

impl fmt::Display for JobReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ran {
            write!(
                f,
                "{}: deleted {}, failed {}, took {} ms",
                self.job, self.deleted, self.failed, self.millis
            )
        } else {
            write!(f, "{}: skipped, another run holds the lock", self.job)
        }
    }
}

/// Dependencies of a job run.
#[derive(Clone)]
pub struct JobContext {
    pub db: PgPool,
    pub storage: Arc<dyn Storage>,
    pub soft_delete_retention_days: i64,
    pub media_retention_days: f64,
    pub audit_retention_days: i64,
}

impl JobContext {
    pub fn from_config(cfg: &Config, db: PgPool, storage: Arc<dyn Storage>) -> Self {
        Self {
            db,
            storage,
            soft_delete_retention_days: cfg.soft_delete_retention_days,
            media_retention_days: cfg.media_retention_days,
            audit_retention_days: cfg.audit_retention_days,
        }
    }
}

/// Connects and runs one job now (the `jobs run` command).
pub async fn run_once(cfg: &Config, job: Job) -> anyhow::Result<JobReport> {
    let db = crate::infra::db::connect(cfg).await?;
    let http = reqwest::Client::new();
    let storage = crate::infra::storage::build(cfg, http)?;
    run_job(&JobContext::from_config(cfg, db, storage), job).await
}

/// Runs `job` under its advisory lock and records the run (metrics and
/// `scheduler_runs`).
pub async fn run_job(ctx: &JobContext, job: Job) -> anyhow::Result<JobReport> {
    let started = Instant::now();
    let result = run_locked(ctx, job, started).await;
    runs::record(&ctx.db, job, &result, started.elapsed()).await;
    result
}

async fn run_locked(ctx: &JobContext, job: Job, started: Instant) -> anyhow::Result<JobReport> {
    // The lock lives on one connection for the whole run.
    let mut lock_conn = crate::infra::db::acquire(&ctx.db).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(job.lock_key())
        .fetch_one(&mut *lock_conn)
        .await?;
    if !locked {
        tracing::info!(job = job.name(), "job already running elsewhere; skipped");
        return Ok(JobReport {
            job: job.name(),
            ..JobReport::default()
        });
    }
    tracing::info!(job = job.name(), "job started");
    let result = match job {
        Job::EntityCleanup => entity_cleanup::run(ctx).await,
        Job::PrivateChatGc => private_chat_gc::run(ctx).await,
        Job::MediaCleanup => media_cleanup::run(ctx, false).await,
        Job::PendingUploadSweep => sweep_uploads(ctx).await,
        Job::IdempotencyKeyCleanup => idempotency_cleanup::run(ctx).await,
        Job::AuditCleanup => audit_cleanup::run(ctx).await,
    };
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(job.lock_key())
        .execute(&mut *lock_conn)
        .await;
    let (deleted, failed) = result?;
    let report = JobReport {
        job: job.name(),
        ran: true,
        deleted,
        failed,
        millis: started.elapsed().as_millis(),
    };
    tracing::info!(
        job = job.name(),
        deleted,
        failed,
        millis = report.millis as u64,
        "job finished"
    );
    Ok(report)
}

/// The `scheduler` command: runs each job on its cron schedule until
/// `shutdown`; a job in progress is allowed to finish its current batch.
pub async fn run_scheduler(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    crate::infra::metrics::handle();
    let db = crate::infra::db::connect(&cfg).await?;
    let storage = crate::infra::storage::build(&cfg, reqwest::Client::new())?;
    let ctx = JobContext::from_config(&cfg, db, storage);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if cfg.scheduler_metrics_port != 0 {
        let exporter = runs::serve_metrics(
            cfg.scheduler_metrics_port,
            cfg.metrics_token.clone(),
            ctx.db.clone(),
            stop_rx.clone(),
        )
        .await?;
        tasks.push(exporter);
    }
    for job in Job::ALL {
        let spec = job.cron(&cfg).to_string();
        let cron = match croner::Cron::new(&spec).parse() {
            Ok(c) => c,
            Err(e) => {
                anyhow::bail!(
                    "invalid cron expression {spec:?} for {}: {e}; use 5 fields such as \"0 2 * * *\"",
                    job.name()
                );
            }
        };
        tracing::info!(job = job.name(), schedule = %spec, "job registered");
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let now = Utc::now();
                let Ok(next) = cron.find_next_occurrence(&now, false) else {
                    tracing::error!(job = job.name(), "no next occurrence; job stopped");
                    return;
                };
                let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                // Each run is its own task so a panic is contained and logged.
                let ctx2 = ctx.clone();
                let run = tokio::spawn(async move { run_job(&ctx2, job).await });
                match run.await {
                    Ok(Ok(report)) => tracing::info!("{report}"),
                    Ok(Err(e)) => {
                        tracing::error!(job = job.name(), error = %format!("{e:#}"), "job failed")
                    }
                    Err(e) => tracing::error!(job = job.name(), error = %e, "job panicked"),
                }
            }
        }));
    }
    tracing::info!("scheduler started");
    shutdown.await;
    tracing::info!("shutting down scheduler");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!("scheduler stopped");
    Ok(())
}
