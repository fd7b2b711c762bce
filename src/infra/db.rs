//! The Postgres pool and migrations.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::Config;

/// Embedded forward-only migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a bounded pool. Fails with a message saying what to check.
pub async fn connect(cfg: &Config) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(cfg.db_max_connections)
        .acquire_timeout(Duration::from_secs(5))
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
