//! Application state: the services every handler may use, built from
//! [`Config`]. Depends only on `config`, `infra` and `realtime`, so every
//! feature can import it without importing the router that assembles them.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::Config;
use crate::infra::captcha::Turnstile;
use crate::infra::email::Mailer;
use crate::infra::google::GoogleClient;
use crate::infra::redis::Redis;
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
    pub db: PgPool,
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
/// subscriber) when sent `true` or dropped.
pub type BackgroundStop = watch::Sender<bool>;

impl AppState {
    /// Connects to every dependency, migrates when `DB_MIGRATE=true` and
    /// starts the event-bus subscriber.
    pub async fn connect(cfg: Config) -> anyhow::Result<(Self, BackgroundStop)> {
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
        let hub = Hub::new();
        let store = EventStore::connect(&redis, cfg.resume.clone()).await?;
        let bus = EventBus::new(redis.clone(), hub.clone(), cfg.event_bus_batched, store);
        let presence = Presence::new(db.clone(), redis.clone(), bus.clone());
        let typing = TypingRelay::new(db.clone(), redis.clone(), bus.clone());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        bus.start_subscriber(Duration::from_secs(5), shutdown_rx)
            .await;

        let state = AppState(Arc::new(Services {
            cfg: Arc::new(cfg),
            db,
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
