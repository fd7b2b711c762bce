//! `atoitalk status`: what an operator asks first, read with the same
//! configuration as `serve`. Each check has its own time limit, so one
//! dependency being down never hides the others; the exit status is
//! non-zero when PostgreSQL, Redis or the storage backend is unreachable.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use crate::config::Config;
use crate::infra::redis::Redis;
use crate::infra::storage::Bucket;

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

async fn within<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {} s", CHECK_TIMEOUT.as_secs()))?
}

/// Prints the report; `Err` when a dependency is unreachable.
pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let mut out = String::new();
    let mut down = Vec::new();

    let db = within(crate::infra::db::connect(cfg)).await;
    match &db {
        Ok(pool) => {
            let applied: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await;
            let latest = crate::infra::db::MIGRATOR
                .iter()
                .map(|m| m.version)
                .max()
                .unwrap_or(0);
            let version = match applied {
                Ok(Some(v)) if v == latest => format!("migration {v} (up to date)"),
                Ok(Some(v)) => {
                    format!("migration {v} (this binary has {latest}: run `atoitalk migrate`)")
                }
                Ok(None) | Err(_) => "no migrations applied (run `atoitalk migrate`)".to_string(),
            };
            let _ = writeln!(
                out,
                "database   ok    {}:{}/{}, {version}",
                cfg.db_host, cfg.db_port, cfg.db_name
            );
        }
        Err(e) => {
            down.push("database");
            let _ = writeln!(out, "database   DOWN  {e:#}");
        }
    }

    let redis = within(Redis::connect(cfg)).await;
    match &redis {
        Ok(r) => match within(async { Ok(r.cluster_health().await?) }).await {
            Ok(None) => {
                let _ = writeln!(
                    out,
                    "redis      ok    {}:{}",
                    cfg.redis_host, cfg.redis_port
                );
            }
            Ok(Some(h)) if h.ok => {
                let _ = writeln!(
                    out,
                    "redis      ok    cluster of {} masters via {}",
                    h.masters,
                    seeds(cfg)
                );
            }
            Ok(Some(_)) => {
                down.push("redis");
                let _ = writeln!(
                    out,
                    "redis      DOWN  cluster via {} reports cluster_state:fail (slots not served)",
                    seeds(cfg)
                );
            }
            Err(e) => {
                down.push("redis");
                let _ = writeln!(out, "redis      DOWN  cluster via {}: {e:#}", seeds(cfg));
            }
        },
        Err(e) => {
            down.push("redis");
            let _ = writeln!(out, "redis      DOWN  {e:#}");
        }
    }

    let backend = if cfg.s3.is_some() { "s3" } else { "local" };
    let storage = within(async {
        let storage = crate::infra::storage::build(cfg, reqwest::Client::new())?;
        storage
            .head(Bucket::Public, "atoitalk-status-probe")
            .await
            .map_err(anyhow::Error::from)
    })
    .await;
    match storage {
        Ok(_) => {
            let _ = writeln!(out, "storage    ok    {backend}");
        }
        Err(e) => {
            down.push("storage");
            let _ = writeln!(out, "storage    DOWN  {backend}: {e:#}");
        }
    }

    if let Ok(redis) = &redis {
        match within(async { Ok(crate::realtime::instances::alive(redis).await?) }).await {
            Ok(list) => {
                let sockets: u64 = list.iter().map(|i| i.sockets).sum();
                let _ = writeln!(out, "instances  {} alive, {sockets} sockets", list.len());
                for i in list {
                    let started = chrono::DateTime::from_timestamp(i.started_at, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  {}  sockets {}  started {started}  lease {} s left",
                        i.id,
                        i.sockets,
                        i.expires_in_ms / 1000
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "instances  unknown: {e:#}");
            }
        }
    }

    if let Ok(pool) = &db {
        match crate::jobs::runs::last_runs(pool).await {
            Ok(runs) => {
                let _ = writeln!(out, "scheduler  last runs");
                for job in crate::jobs::Job::ALL {
                    match runs.iter().find(|r| r.job == job.name()) {
                        Some(r) => {
                            let result = if r.ok {
                                format!("ok, deleted {}, failed {}", r.deleted, r.failed)
                            } else {
                                format!("FAILED: {}", r.error.as_deref().unwrap_or(""))
                            };
                            let _ = writeln!(
                                out,
                                "  {:<22} {}  {} ms  {result}",
                                job.name(),
                                r.finished_at.to_rfc3339(),
                                r.duration_ms
                            );
                        }
                        None => {
                            let _ = writeln!(out, "  {:<22} never ran", job.name());
                        }
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "scheduler  unknown: {e}");
            }
        }
    }

    print!("{out}");
    if down.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("unreachable: {}", down.join(", "))
    }
}

/// `REDIS_CLUSTER_NODES` as configured (host:port list).
fn seeds(cfg: &Config) -> String {
    cfg.redis_cluster_nodes
        .iter()
        // Never the credentials a URL may carry.
        .map(|n| {
            n.trim_start_matches("redis://")
                .rsplit('@')
                .next()
                .unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join(",")
}
