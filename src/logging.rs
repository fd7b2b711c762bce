//! Log setup: JSON in production, human-readable elsewhere. `RUST_LOG`
//! overrides the default filter.

use tracing_subscriber::EnvFilter;

use crate::config::AppEnv;

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(env: AppEnv) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if env == AppEnv::Production {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
