//! The Postgres pool and migrations.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use crate::config::Config;

/// Embedded forward-only migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle at least this long is pinged before use (a
/// failed ping replaces it with a fresh connection).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Opens a bounded pool. Fails with a message saying what to check.
pub async fn connect(cfg: &Config) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(cfg.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out: one more round trip per
        // acquire, i.e. per request. Only a connection that sat idle can have
        // been cut off unnoticed; one returned a moment ago was just working.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(cfg.pg_connect_options())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL at {}:{} (database {:?}, user {:?}): {e}; \
                 start PostgreSQL or set DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME",
                cfg.db_host,
                cfg.db_port,
                cfg.db_name,
                cfg.db_user
            )
        })
}

/// Applies pending migrations. A Postgres advisory lock (taken by sqlx)
/// serialises instances that start at the same time.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))
}

/// `pool.acquire()`, counted in `db_pool_waiters` while it waits and timed
/// in `db_pool_acquire_seconds`: sqlx exposes no waiter count, so the
/// places that take a connection explicitly (authentication of every
/// request, transactions, `AppState::read_conn`) go through here. Single
/// statements run directly on `&PgPool` wait inside sqlx uncounted, so the
/// gauge is a lower bound, but it moves with the request paths.
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let wait = crate::infra::metrics::PoolWait::start();
    let conn = pool.acquire().await;
    wait.done(conn.is_ok());
    conn
}

/// `pool.begin()` with the wait for its connection counted as in
/// [`acquire`] (the `BEGIN` round trip itself is not part of the wait).
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let conn = acquire(pool).await?;
    // What `Pool::begin` does with the connection it acquired.
    Transaction::begin(conn, None).await
}
