//! Application state: the services every handler may use, built from
//! [`Config`]. Depends only on `config`, `infra` and `realtime`, so every
//! feature can import it without importing the router that assembles them.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Config;
use crate::infra::captcha::Turnstile;
use crate::infra::email::Mailer;
use crate::infra::google::GoogleClient;
use crate::infra::redis::Redis;
use crate::infra::replica::Replica;
use crate::infra::storage::Storage;
use crate::realtime::presence::Presence;
use crate::realtime::store::EventStore;
use crate::realtime::typing::TypingRelay;
use crate::realtime::{EventBus, Hub};

/// Everything a handler may need. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// The services behind [`AppState`].
pub struct Services {
    pub cfg: Arc<Config>,
    /// The primary: every write, and every read that is not routed through
    /// [`AppState::read_conn`].
    pub db: PgPool,
    /// The read replica, when `DB_READ_*` configures one.
    pub replica: Option<Replica>,
    pub redis: Redis,
    pub storage: Arc<dyn Storage>,
    pub mailer: Arc<dyn Mailer>,
    pub captcha: Turnstile,
    pub google: GoogleClient,
    pub http: reqwest::Client,
    pub hub: Arc<Hub>,
    pub bus: EventBus,
    pub presence: Presence,
    pub typing: TypingRelay,
}

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Stops what [`AppState::connect`] started in the background (the event-bus
/// subscriber, the presence sweeper) when sent `true` or dropped.
pub type BackgroundStop = watch::Sender<bool>;

impl AppState {
    /// Connects to every dependency, migrates when `DB_MIGRATE=true` and
    /// starts the event-bus subscriber and the presence sweeper.
    pub async fn connect(cfg: Config) -> anyhow::Result<(Self, BackgroundStop)> {
        // Before anything is counted: earlier increments would be lost.
        crate::infra::metrics::handle();
        for w in cfg.startup_warnings() {
            tracing::warn!("{w}");
        }
        let db = crate::infra::db::connect(&cfg).await?;
        if cfg.db_migrate {
            crate::infra::db::migrate(&db).await?;
            tracing::info!("database schema migrated");
        } else {
            tracing::info!("database migration skipped (DB_MIGRATE=false)");
        }
        let redis = Redis::connect(&cfg).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let storage = crate::infra::storage::build(&cfg, http.clone())?;
        let mailer = crate::infra::email::build(&cfg.smtp)?;
        let captcha = Turnstile::new(
            cfg.turnstile_secret_key.clone(),
            cfg.turnstile_verify_url.clone(),
            http.clone(),
        );
        let google = GoogleClient::new(cfg.google.clone(), http.clone());
        let hub = Hub::with_direct_writes_from(cfg.ws_direct_write_min_sockets);
        let store = EventStore::connect(&redis, cfg.resume.clone()).await?;
        let bus = EventBus::new(redis.clone(), hub.clone(), cfg.event_bus_batched, store);
        let presence = Presence::new(
            db.clone(),
            redis.clone(),
            bus.clone(),
            hub.clone(),
            cfg.presence_offline_grace,
        );
        let typing = TypingRelay::new(db.clone(), redis.clone(), bus.clone());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let replica = Replica::from_config(&cfg, &redis);
        if let Some(r) = &replica {
            r.start_monitor(cfg.pg_connect_options(), shutdown_rx.clone());
            tracing::info!("read replica configured; read-heavy endpoints use it");
        }
        crate::infra::metrics::spawn_pool_probe(db.clone(), shutdown_rx.clone());
        crate::realtime::instances::spawn_lease(
            redis.clone(),
            hub.clone(),
            presence.instance_id().to_string(),
            shutdown_rx.clone(),
        );
        bus.start_subscriber(Duration::from_secs(5), shutdown_rx.clone())
            .await;
        presence.start_sweeper(shutdown_rx);

        let state = AppState(Arc::new(Services {
            cfg: Arc::new(cfg),
            db,
            replica,
            redis,
            storage,
            mailer,
            captcha,
            google,
            http,
            hub,
            bus,
            presence,
            typing,
        }));
        Ok((state, shutdown_tx))
    }
}

impl AppState {
    /// A connection for a read-heavy query on behalf of `user`: the replica
    /// when it may serve them (see `infra::replica`), else the primary. The
    /// ONE place that choice is made; switching an endpoint to it is the
    /// line that acquires its connection. Without a replica this is exactly
    /// `db.acquire()`. A replica that cannot hand out a connection is marked
    /// down and the primary answers instead.
    pub async fn read_conn(&self, user: Uuid) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        if let Some(r) = &self.replica {
            if r.serves(user).await {
                match r.pool().acquire().await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => r.mark_down(&e),
                }
            }
        }
        crate::infra::db::acquire(&self.db).await
    }

    /// After a successful write by `user`: remember how far the primary is,
    /// so their next reads wait for the replica or go to the primary.
    pub async fn remember_write(&self, user: Uuid) {
        if let Some(r) = &self.replica {
            r.remember_write(&self.db, user).await;
        }
    }
}
