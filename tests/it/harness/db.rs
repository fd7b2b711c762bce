//! Test databases: one per test, cloned from a migrated template and dropped
//! when the test ends (also when it panics), so runs leave nothing behind.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use uuid::Uuid;

use super::base_env;

/// Name prefix of per-test databases (`scripts/test.sh` removes old ones).
pub const TEST_DB_PREFIX: &str = "atoitalk_t_";
/// Name prefix of migrated templates, one per set of migrations.
pub const TEMPLATE_PREFIX: &str = "atoitalk_tpl_";

/// A test's own database, dropped `WITH (FORCE)` when this guard goes.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// An empty database (no migrations applied).
    pub async fn empty() -> TestDb {
        let name = fresh_name();
        let mut conn = admin_conn(&base_env()).await;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        TestDb { name }
    }

    /// A database with every migration applied: a copy of the template for
    /// the current migrations, which is much cheaper than migrating.
    pub async fn migrated() -> TestDb {
        let env = base_env();
        let template = template_name();
        let name = fresh_name();
        let mut conn = admin_conn(&env).await;
        // With a standby (TEST_DB_READ_PORT), the default WAL_LOG copy would
        // stream every test's whole database through replication, and under
        // the full suite the standby falls seconds behind; FILE_COPY logs
        // one record and the standby copies the template's files itself.
        let strategy = if std::env::var_os("TEST_DB_READ_PORT").is_some() {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        let create = format!("CREATE DATABASE {name} TEMPLATE {template}{strategy}");
        if let Err(e) = conn.execute(create.as_str()).await {
            // Missing on the first use of these migrations, or removed by a
            // cleanup: make it, then copy.
            assert!(is_missing_database(&e), "create test database: {e}");
            ensure_template(&mut conn, &env, &template).await;
            conn.execute(create.as_str())
                .await
                .expect("create test database from template");
        }
        TestDb { name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Drop runs on the test's runtime, which must not be blocked on; a
        // thread with a runtime of its own can be.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = admin_conn(&base_env()).await;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// Whether a database of that name exists (for tests of the harness).
pub async fn database_exists(name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut admin_conn(&base_env()).await)
        .await
        .expect("look up database")
}

fn fresh_name() -> String {
    format!("{TEST_DB_PREFIX}{}", Uuid::new_v4().simple())
}

fn connect_options(env: &HashMap<String, String>, database: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&env["DB_HOST"])
        .port(env["DB_PORT"].parse().expect("TEST_DB_PORT"))
        .username(&env["DB_USER"])
        .password(&env["DB_PASSWORD"])
        .database(database)
}

async fn admin_conn(env: &HashMap<String, String>) -> PgConnection {
    connect_options(env, "postgres")
        .connect()
        .await
        .expect("cannot reach the test PostgreSQL; run scripts/test.sh, which starts it")
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    // invalid_catalog_name: "template database ... does not exist"
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "3D000")
}

/// The template's name is derived from the migrations' versions and
/// checksums, so a branch with other migrations gets (and keeps) its own.
fn template_name() -> String {
    let mut h = Sha256::new();
    for m in atoitalk::infra::db::MIGRATOR.iter() {
        h.update(m.version.to_be_bytes());
        h.update(&m.checksum);
    }
    format!("{TEMPLATE_PREFIX}{}", &hex::encode(h.finalize())[..16])
}

/// Creates the template unless another test (of this process or another)
/// has. It is migrated under a temporary name and then renamed, so a copy
/// is never taken of a half-migrated database.
async fn ensure_template(conn: &mut PgConnection, env: &HashMap<String, String>, template: &str) {
    // One creator at a time across processes; the lock goes with `conn`'s
    // session if this test dies meanwhile.
    let key = i64::from_be_bytes(Sha256::digest(template.as_bytes())[..8].try_into().unwrap());
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .expect("template lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(template)
            .fetch_one(&mut *conn)
            .await
            .expect("look up template");
    if !exists {
        let building = format!("{template}_{}", &Uuid::new_v4().simple().to_string()[..8]);
        conn.execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .expect("create template");
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(env, &building))
            .await
            .expect("connect to template");
        atoitalk::infra::db::migrate(&pool)
            .await
            .expect("migrate template");
        pool.close().await;
        // IS_TEMPLATE lets a test user without superuser rights copy it.
        for sql in [
            format!("ALTER DATABASE {building} IS_TEMPLATE true"),
            format!("ALTER DATABASE {building} RENAME TO {template}"),
        ] {
            conn.execute(sql.as_str()).await.expect("finish template");
        }
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await
        .expect("template unlock");
}
