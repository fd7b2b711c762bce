//! Typed configuration read from the environment (and an optional `.env`).
//!
//! Every variable of the reference README keeps its name and default. A value
//! that is present but does not parse stops start-up with one line naming the
//! variable (the reference silently fell back to defaults, which hides typos).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// Default secret shipped by the reference; refusing it in production keeps
/// forgotten deployments from signing tokens with a public key.
pub const INSECURE_DEFAULT_SECRET: &str = "secret";

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {name}: {value:?} ({reason})")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Insecure(String),
}

/// Where the process runs; only `production` changes behaviour (JSON logs,
/// secrets must be set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
    Test,
}

/// S3 settings; present only when a bucket is configured.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket_public: String,
    pub bucket_private: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub endpoint: String,
    pub public_domain: String,
}

/// SMTP settings; `host` empty means "write emails to the log".
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub from_email: String,
    pub from_name: String,
    pub send_async: bool,
    /// `EMAIL_LOG_ONLY`: write emails (OTP codes included) to the log even
    /// when SMTP is configured; the only way to run production without SMTP.
    pub log_only: bool,
}

/// Google OAuth client settings and endpoints (the endpoints are configurable
/// so tests can point them at a local fake).
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_url: String,
    pub auth_url: String,
    pub token_url: String,
    pub userinfo_url: String,
}

impl GoogleConfig {
    /// Google sign-in is off until a client id is configured.
    pub fn enabled(&self) -> bool {
        !self.client_id.is_empty()
    }
}

/// A 256-bit key that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Two-factor authentication (extension, issue 18).
#[derive(Debug, Clone)]
pub struct TwoFactorConfig {
    /// `TWO_FACTOR_ENABLED` (default true). Off: the 2FA endpoints answer
    /// 403 and sign-in asks no second factor (enrolments are kept).
    pub enabled: bool,
    /// `TOTP_ENCRYPTION_KEY` (32 bytes, base64 or hex): encrypts TOTP
    /// secrets and keys the recovery-code hashes. Outside production an
    /// unset key is derived from `JWT_SECRET` (with a warning).
    pub key: SecretKey,
    /// Whether `key` came from `TOTP_ENCRYPTION_KEY`.
    pub key_configured: bool,
    /// `TWO_FACTOR_CHALLENGE_TTL_SECONDS` (default 300): lifetime of a login challenge.
    pub challenge_ttl_secs: u64,
}

/// Parses `TOTP_ENCRYPTION_KEY`: 32 bytes as base64 (standard or URL-safe)
/// or as 64 hex digits.
fn parse_key(raw: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(raw).ok()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
            .ok()?
    };
    bytes.try_into().ok()
}

fn two_factor(src: &VarSource<'_>, jwt_secret: &str) -> Result<TwoFactorConfig, ConfigError> {
    use sha2::{Digest, Sha256};
    let raw = src.string("TOTP_ENCRYPTION_KEY", "");
    let (key, key_configured) = if raw.trim().is_empty() {
        let derived: [u8; 32] =
            Sha256::digest(format!("atoitalk-totp-key:{jwt_secret}").as_bytes()).into();
        (derived, false)
    } else {
        let key = parse_key(&raw).ok_or_else(|| ConfigError::Invalid {
            name: "TOTP_ENCRYPTION_KEY",
            value: "(hidden)".into(),
            reason: "expected 32 bytes as base64 or 64 hex digits".into(),
        })?;
        (key, true)
    };
    let ttl = src.parsed(
        "TWO_FACTOR_CHALLENGE_TTL_SECONDS",
        300i64,
        "a number of seconds",
    )?;
    Ok(TwoFactorConfig {
        enabled: src.boolean("TWO_FACTOR_ENABLED", true)?,
        key: SecretKey(key),
        key_configured,
        challenge_ttl_secs: positive("TWO_FACTOR_CHALLENGE_TTL_SECONDS", ttl)? as u64,
    })
}

/// The whole runtime configuration shared by `serve`, `scheduler` and the
/// maintenance commands.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub app_port: u16,
    pub app_url: String,
    pub cors_allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,

    pub db_host: String,
    pub db_port: u16,
    pub db_user: String,
    pub db_password: String,
    pub db_name: String,
    pub db_sslmode: String,
    pub db_migrate: bool,
    pub db_max_connections: u32,
    /// A streaming standby for read-heavy endpoints (`DB_READ_*`); `None`
    /// means every read goes to the primary at no extra cost.
    pub db_read: Option<ReadReplicaConfig>,

    pub redis_host: String,
    pub redis_port: u16,
    pub redis_password: String,
    pub redis_db: i64,
    pub redis_key_prefix: String,
    /// `REDIS_CLUSTER_NODES` seed nodes (`redis://host:port`): when any is
    /// set, every Redis use runs on that Redis Cluster and `REDIS_HOST`/
    /// `REDIS_PORT`/`REDIS_DB` are not used.
    pub redis_cluster_nodes: Vec<String>,
    /// `batched` (default): one pub/sub message per event with its list of
    /// recipients. `reference`: the reference's one-message-per-recipient
    /// shape, for fleets that mix reference and Rust instances.
    pub event_bus_batched: bool,
    /// Resume after reconnect (`realtime::store`).
    pub resume: ResumeConfig,

    pub s3: Option<S3Config>,
    /// Directory of the local storage backend used when no S3 is configured.
    pub media_local_dir: PathBuf,
    /// Concurrent `/storage` transfers of the local backend.
    pub storage_max_concurrent_transfers: usize,
    /// Per-user cap on pending (not yet completed) presigned uploads.
    pub media_max_pending_uploads: i64,
    /// Per-user cap on the declared bytes of pending uploads.
    pub media_max_pending_bytes: i64,

    pub smtp: SmtpConfig,
    pub google: GoogleConfig,

    pub jwt_secret: String,
    pub jwt_exp_secs: i64,
    pub turnstile_secret_key: String,
    pub turnstile_verify_url: String,
    pub otp_exp_secs: i64,
    pub otp_rate_limit_secs: i64,
    pub otp_secret: String,
    pub login_throttle: crate::auth::throttle::LoginThrottle,
    pub two_factor: TwoFactorConfig,

    pub soft_delete_retention_days: i64,
    pub media_retention_days: f64,
    pub entity_cleanup_cron: String,
    pub private_chat_cleanup_cron: String,
    pub media_cleanup_cron: String,
    pub pending_upload_sweep_cron: String,
    pub idempotency_key_cleanup_cron: String,
    /// `AUDIT_CLEANUP_CRON`: when the audit-cleanup job runs.
    pub audit_cleanup_cron: String,

    pub shutdown_grace: Duration,
    pub listener: ListenerConfig,
    /// Most WebSockets one user may hold across every instance (0 = no cap).
    pub ws_max_connections_per_user: u32,
    /// `WS_DIRECT_WRITE_MIN_SOCKETS`: a delivery to at least this many of an
    /// instance's sockets is written straight to them (write-through,
    /// `realtime::hub::delivery`); 0 = never.
    pub ws_direct_write_min_sockets: usize,
    /// How long a user must be connected nowhere before contacts are told
    /// `user.offline` (a page reload within it announces nothing).
    pub presence_offline_grace: Duration,
    /// `METRICS_TOKEN`: when set, `/metrics` needs `Authorization: Bearer <it>`.
    pub metrics_token: Option<String>,
    /// `SCHEDULER_METRICS_PORT`: the scheduler's own `/metrics` listener (0 = off).
    pub scheduler_metrics_port: u16,
    /// `AUDIT_RETENTION_DAYS`: admin audit entries older than this are deleted.
    pub audit_retention_days: i64,
}

/// The per-user event store behind `GET /ws?since=` (see `realtime::store`).
#[derive(Debug, Clone)]
pub struct ResumeConfig {
    /// Off: no `meta.seq`, nothing stored, every `since` answers `sync.reset`.
    pub enabled: bool,
    /// Every event younger than this is kept...
    pub retention: Duration,
    /// ...and so are the last this many events of each user, whichever keeps more.
    pub min_events: u64,
    /// A user's store with no new event for this long is dropped (0 = never).
    pub idle_ttl: Duration,
    /// Redis Cluster seed nodes for the store (`host:port` or URLs); empty:
    /// the store lives in the main Redis.
    pub cluster_nodes: Vec<String>,
}

/// Where the read replica is and how far behind it may fall.
#[derive(Debug, Clone)]
pub struct ReadReplicaConfig {
    /// `DB_READ_URL`; when set it replaces host and port (and whatever else
    /// it names) of the primary's settings.
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    pub max_connections: u32,
    /// Beyond this replay lag every read goes to the primary.
    pub max_lag: Duration,
}

/// Protections of the HTTP listener (see `http::server`).
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    /// A request head must be complete this long after the client starts
    /// sending it (and a new connection must deliver its first one in time).
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after
    /// this long; also how long a stalled response write may wait.
    pub idle_timeout: Duration,
    /// Open TCP connections per client address (IPv6: per /64) beyond which
    /// new ones are refused; peers in `TRUSTED_PROXY_CIDRS` are exempt. 0 = no cap.
    pub max_connections_per_ip: usize,
}

/// Reads variables from any source: the process environment in production,
/// a plain map in tests (so both go through the same parsing).
pub struct VarSource<'a> {
    lookup: Box<Lookup<'a>>,
}

type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl<'a> VarSource<'a> {
    pub fn from_env() -> Self {
        Self {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    pub fn from_map(map: &'a HashMap<String, String>) -> Self {
        Self {
            lookup: Box::new(move |k| map.get(k).cloned()),
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// String value; present-but-empty is kept as empty (like the reference).
    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => v.trim().parse::<T>().map_err(|_| ConfigError::Invalid {
                name,
                value: v.clone(),
                reason: format!("expected {what}"),
            }),
        }
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) if v.trim().is_empty() => Ok(default),
            Some(v) => parse_bool(v.trim()).ok_or(ConfigError::Invalid {
                name,
                value: v.clone(),
                reason: "expected true or false".into(),
            }),
        }
    }
}

/// Booleans as the reference accepts them (Go's `strconv.ParseBool`).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn strip_quotes(v: String) -> String {
    let t = v.trim();
    t.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t)
        .to_string()
}

/// A whole number of seconds greater than 0.
fn seconds(src: &VarSource<'_>, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    let v = src.parsed(name, default, "a number of seconds")?;
    positive(name, i64::try_from(v).unwrap_or(i64::MAX))?;
    Ok(Duration::from_secs(v))
}

/// `host:port,...` (or `redis://` URLs) as URLs.
fn node_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains("://") {
                n.to_string()
            } else {
                format!("redis://{n}")
            }
        })
        .collect()
}

fn positive(name: &'static str, v: i64) -> Result<i64, ConfigError> {
    if v <= 0 {
        return Err(ConfigError::Invalid {
            name,
            value: v.to_string(),
            reason: "must be greater than 0".into(),
        });
    }
    Ok(v)
}

/// `DB_READ_URL`, or `DB_READ_HOST` (+ `DB_READ_PORT`, default `DB_PORT`):
/// either turns the replica on.
fn read_replica(
    src: &VarSource<'_>,
    db_port: u16,
    db_max_connections: u32,
) -> Result<Option<ReadReplicaConfig>, ConfigError> {
    let url = Some(src.string("DB_READ_URL", "")).filter(|u| !u.trim().is_empty());
    let host = src.string("DB_READ_HOST", "");
    if url.is_none() && host.trim().is_empty() {
        return Ok(None);
    }
    if let Some(u) = &url {
        let scheme_ok = u.starts_with("postgres://") || u.starts_with("postgresql://");
        if !scheme_ok || u.parse::<sqlx::postgres::PgConnectOptions>().is_err() {
            return Err(ConfigError::Invalid {
                name: "DB_READ_URL",
                value: "(hidden: may hold a password)".into(),
                reason: "expected postgres://user:password@host:port/database".into(),
            });
        }
    }
    let max_lag = seconds(src, "DB_READ_MAX_LAG_SECONDS", 30)?;
    if max_lag > crate::infra::replica::WRITE_MEMORY {
        return Err(ConfigError::Invalid {
            name: "DB_READ_MAX_LAG_SECONDS",
            value: max_lag.as_secs().to_string(),
            reason: format!(
                "must not exceed {} (how long a user's last write is remembered)",
                crate::infra::replica::WRITE_MEMORY.as_secs()
            ),
        });
    }
    Ok(Some(ReadReplicaConfig {
        url,
        host: host.trim().to_string(),
        port: src.parsed("DB_READ_PORT", db_port, "a TCP port number")?,
        max_connections: src.parsed(
            "DB_READ_MAX_CONNECTIONS",
            db_max_connections,
            "a whole number",
        )?,
        max_lag,
    }))
}

/// Settings of every database session. `jit = off`: this server runs short
/// statements, and PostgreSQL compiles one to machine code once its
/// estimate passes `jit_above_cost` (100,000), which a member of ~12,000
/// chats' list reaches (estimated 84,000 at 10,000). Measured on the
/// chat-list statement with the threshold forced to 0: 0.4 ms without,
/// 130 ms with the compilation, 1.85 s with inlining and optimisation too
/// (their threshold is 500,000).
const SESSION_SETTINGS: [(&str, &str); 2] = [("timezone", "UTC"), ("jit", "off")];

impl Config {
    /// Loads `.env` (never overriding real variables) and reads the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_source(&VarSource::from_env())
    }

    /// Parses every variable from `src`.
    pub fn from_source(src: &VarSource<'_>) -> Result<Self, ConfigError> {
        let app_env = match src.string("APP_ENV", "development").trim() {
            "production" => AppEnv::Production,
            "test" => AppEnv::Test,
            "development" | "" => AppEnv::Development,
            other => {
                return Err(ConfigError::Invalid {
                    name: "APP_ENV",
                    value: other.to_string(),
                    reason: "expected development, production or test".into(),
                })
            }
        };

        let mut trusted_proxies = Vec::new();
        for entry in src.string("TRUSTED_PROXY_CIDRS", "").split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let net: IpNet = entry.parse().map_err(|_| ConfigError::Invalid {
                name: "TRUSTED_PROXY_CIDRS",
                value: entry.to_string(),
                reason: "expected CIDR notation such as 10.0.0.0/8".into(),
            })?;
            trusted_proxies.push(net);
        }

        let bucket_public = src.string("S3_BUCKET_PUBLIC", "");
        let bucket_private = src.string("S3_BUCKET_PRIVATE", "");
        let s3 = if bucket_public.is_empty() && bucket_private.is_empty() {
            None
        } else {
            if bucket_public.is_empty() || bucket_private.is_empty() {
                return Err(ConfigError::Invalid {
                    name: if bucket_public.is_empty() {
                        "S3_BUCKET_PUBLIC"
                    } else {
                        "S3_BUCKET_PRIVATE"
                    },
                    value: String::new(),
                    reason: "both S3_BUCKET_PUBLIC and S3_BUCKET_PRIVATE must be set".into(),
                });
            }
            Some(S3Config {
                bucket_public,
                bucket_private,
                region: src.string("S3_REGION", ""),
                access_key: src.string("S3_ACCESS_KEY", ""),
                secret_key: src.string("S3_SECRET_KEY", ""),
                endpoint: src.string("S3_ENDPOINT", ""),
                public_domain: src.string("S3_PUBLIC_DOMAIN", ""),
            })
        };

        let soft_delete_retention_days = src.parsed(
            "SOFT_DELETE_RETENTION_DAYS",
            30i64,
            "a whole number of days",
        )?;
        let media_retention_days: f64 =
            src.parsed("MEDIA_RETENTION_DAYS", 7.0f64, "a number of days")?;
        if !media_retention_days.is_finite() || media_retention_days < 0.0 {
            return Err(ConfigError::Invalid {
                name: "MEDIA_RETENTION_DAYS",
                value: media_retention_days.to_string(),
                reason: "expected a finite number of days >= 0".into(),
            });
        }
        if soft_delete_retention_days < 0 {
            return Err(ConfigError::Invalid {
                name: "SOFT_DELETE_RETENTION_DAYS",
                value: soft_delete_retention_days.to_string(),
                reason: "expected a number of days >= 0".into(),
            });
        }

        let jwt_secret = src.string("JWT_SECRET", INSECURE_DEFAULT_SECRET);
        let two_factor = two_factor(src, &jwt_secret)?;
        let db_port = src.parsed("DB_PORT", 5432u16, "a TCP port number")?;
        let db_max_connections = src.parsed("DB_MAX_CONNECTIONS", 20u32, "a whole number")?;
        let cfg = Config {
            app_env,
            app_port: src.parsed("APP_PORT", 8080u16, "a TCP port number (1-65535)")?,
            app_url: src
                .string("APP_URL", "http://localhost:8080")
                .trim_end_matches('/')
                .to_string(),
            cors_allowed_origins: src
                .string("APP_CORS_ALLOWED_ORIGINS", "*")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            trusted_proxies,
            db_host: src.string("DB_HOST", "localhost"),
            db_port,
            db_user: src.string("DB_USER", "postgres"),
            db_password: src.string("DB_PASSWORD", "postgres"),
            db_name: src.string("DB_NAME", "atoitalk"),
            db_sslmode: src.string("DB_SSLMODE", "disable"),
            db_migrate: src.boolean("DB_MIGRATE", true)?,
            db_max_connections,
            db_read: read_replica(src, db_port, db_max_connections)?,
            redis_host: src.string("REDIS_HOST", "localhost"),
            redis_port: src.parsed("REDIS_PORT", 6379u16, "a TCP port number")?,
            redis_password: src.string("REDIS_PASSWORD", ""),
            redis_db: src.parsed("REDIS_DB", 0i64, "a database number")?,
            redis_key_prefix: src.string("REDIS_KEY_PREFIX", ""),
            redis_cluster_nodes: node_list(&src.string("REDIS_CLUSTER_NODES", "")),
            event_bus_batched: match src.string("EVENT_BUS_FORMAT", "batched").trim() {
                "batched" | "" => true,
                "reference" => false,
                other => {
                    return Err(ConfigError::Invalid {
                        name: "EVENT_BUS_FORMAT",
                        value: other.to_string(),
                        reason: "expected batched or reference".into(),
                    })
                }
            },
            s3,
            media_local_dir: PathBuf::from(src.string("MEDIA_LOCAL_DIR", "./var/media")),
            storage_max_concurrent_transfers: positive(
                "STORAGE_MAX_CONCURRENT_TRANSFERS",
                src.parsed("STORAGE_MAX_CONCURRENT_TRANSFERS", 64i64, "a whole number")?,
            )? as usize,
            media_max_pending_uploads: positive(
                "MEDIA_MAX_PENDING_UPLOADS",
                src.parsed("MEDIA_MAX_PENDING_UPLOADS", 10i64, "a whole number")?,
            )?,
            media_max_pending_bytes: positive(
                "MEDIA_MAX_PENDING_BYTES",
                src.parsed(
                    "MEDIA_MAX_PENDING_BYTES",
                    100i64 * 1024 * 1024,
                    "a number of bytes",
                )?,
            )?,
            smtp: SmtpConfig {
                host: src.string("SMTP_HOST", ""),
                port: src.parsed("SMTP_PORT", 587u16, "a TCP port number")?,
                user: src.string("SMTP_USER", ""),
                password: src.string("SMTP_PASSWORD", ""),
                from_email: src.string("SMTP_FROM_EMAIL", ""),
                from_name: src.string("SMTP_FROM_NAME", ""),
                send_async: src.boolean("SMTP_ASYNC", true)?,
                log_only: src.boolean("EMAIL_LOG_ONLY", false)?,
            },
            google: GoogleConfig {
                client_id: src.string("GOOGLE_CLIENT_ID", ""),
                client_secret: src.string("GOOGLE_CLIENT_SECRET", ""),
                redirect_url: src.string("GOOGLE_REDIRECT_URL", ""),
                auth_url: src.string(
                    "GOOGLE_AUTH_URL",
                    "https://accounts.google.com/o/oauth2/auth",
                ),
                token_url: src.string("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token"),
                userinfo_url: src.string(
                    "GOOGLE_USERINFO_URL",
                    "https://www.googleapis.com/oauth2/v2/userinfo",
                ),
            },
            jwt_secret,
            jwt_exp_secs: positive(
                "JWT_EXP",
                src.parsed("JWT_EXP", 86400i64, "a number of seconds")?,
            )?,
            turnstile_secret_key: src.string("TURNSTILE_SECRET_KEY", ""),
            turnstile_verify_url: src.string(
                "TURNSTILE_VERIFY_URL",
                "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            ),
            otp_exp_secs: positive(
                "OTP_EXP",
                src.parsed("OTP_EXP", 300i64, "a number of seconds")?,
            )?,
            otp_rate_limit_secs: match src.parsed(
                "OTP_RATE_LIMIT_SECONDS",
                60i64,
                "a number of seconds",
            )? {
                v if v <= 0 => 60,
                v => v,
            },
            otp_secret: src.string("OTP_SECRET", INSECURE_DEFAULT_SECRET),
            login_throttle: crate::auth::throttle::LoginThrottle {
                after: src.parsed("LOGIN_THROTTLE_AFTER", 5u32, "a whole number")?,
                base: Duration::from_secs(src.parsed(
                    "LOGIN_THROTTLE_BASE_SECONDS",
                    1u64,
                    "a number of seconds",
                )?),
                max: Duration::from_secs(src.parsed(
                    "LOGIN_THROTTLE_MAX_SECONDS",
                    300u64,
                    "a number of seconds",
                )?),
            },
            two_factor,
            soft_delete_retention_days,
            media_retention_days,
            entity_cleanup_cron: strip_quotes(src.string("ENTITY_CLEANUP_CRON", "0 2 * * *")),
            private_chat_cleanup_cron: strip_quotes(
                src.string("PRIVATE_CHAT_CLEANUP_CRON", "30 2 * * *"),
            ),
            media_cleanup_cron: strip_quotes(src.string("MEDIA_CLEANUP_CRON", "0 3 * * *")),
            pending_upload_sweep_cron: strip_quotes(
                src.string("PENDING_UPLOAD_SWEEP_CRON", "*/5 * * * *"),
            ),
            idempotency_key_cleanup_cron: strip_quotes(
                src.string("IDEMPOTENCY_KEY_CLEANUP_CRON", "17 * * * *"),
            ),
            audit_cleanup_cron: strip_quotes(src.string("AUDIT_CLEANUP_CRON", "15 3 * * *")),
            shutdown_grace: Duration::from_secs(src.parsed(
                "SHUTDOWN_GRACE_SECONDS",
                10u64,
                "a number of seconds",
            )?),
            resume: ResumeConfig {
                enabled: src.boolean("RESUME_ENABLED", true)?,
                retention: Duration::from_secs(src.parsed(
                    "RESUME_RETENTION_SECONDS",
                    600u64,
                    "a number of seconds",
                )?),
                min_events: positive(
                    "RESUME_RETENTION_EVENTS",
                    src.parsed("RESUME_RETENTION_EVENTS", 1000i64, "a whole number")?,
                )? as u64,
                idle_ttl: Duration::from_secs(src.parsed(
                    "RESUME_IDLE_TTL_SECONDS",
                    86_400u64,
                    "a number of seconds (0 = never)",
                )?),
                // Its own cluster only when named; else wherever the rest is.
                cluster_nodes: node_list(&src.string("RESUME_REDIS_CLUSTER_NODES", "")),
            },
            listener: ListenerConfig {
                header_read_timeout: seconds(src, "HTTP_HEADER_READ_TIMEOUT_SECONDS", 10)?,
                idle_timeout: seconds(src, "HTTP_IDLE_TIMEOUT_SECONDS", 75)?,
                max_connections_per_ip: src.parsed(
                    "HTTP_MAX_CONNECTIONS_PER_IP",
                    256usize,
                    "a whole number (0 = no cap)",
                )?,
            },
            ws_max_connections_per_user: src.parsed(
                "WS_MAX_CONNECTIONS_PER_USER",
                20u32,
                "a whole number (0 = no cap)",
            )?,
            ws_direct_write_min_sockets: src.parsed(
                "WS_DIRECT_WRITE_MIN_SOCKETS",
                crate::realtime::hub::DIRECT_WRITE_MIN_SOCKETS,
                "a whole number of sockets (0 = never write directly)",
            )?,
            presence_offline_grace: Duration::from_secs(src.parsed(
                "PRESENCE_OFFLINE_GRACE_SECONDS",
                3u64,
                "a whole number of seconds (0 = at once)",
            )?),
            metrics_token: Some(src.string("METRICS_TOKEN", "").trim().to_string())
                .filter(|t| !t.is_empty()),
            scheduler_metrics_port: src.parsed(
                "SCHEDULER_METRICS_PORT",
                9100u16,
                "a TCP port number (0 = off)",
            )?,
            audit_retention_days: positive(
                "AUDIT_RETENTION_DAYS",
                src.parsed("AUDIT_RETENTION_DAYS", 365i64, "a whole number of days")?,
            )?,
        };
        if !cfg.redis_cluster_nodes.is_empty() && cfg.redis_db != 0 {
            return Err(ConfigError::Invalid {
                name: "REDIS_DB",
                value: cfg.redis_db.to_string(),
                reason:
                    "a Redis Cluster has database 0 only; unset REDIS_DB with REDIS_CLUSTER_NODES"
                        .into(),
            });
        }
        cfg.check_secrets()?;
        cfg.check_email()?;
        cfg.check_two_factor_key()?;
        Ok(cfg)
    }

    /// Insecure default secrets are refused in production (and warned about
    /// elsewhere by [`Config::insecure_secret_warnings`]).
    fn check_secrets(&self) -> Result<(), ConfigError> {
        if self.app_env == AppEnv::Production {
            if let Some(w) = self.insecure_secret_warnings().into_iter().next() {
                return Err(ConfigError::Insecure(format!(
                    "{w}; refusing to start with APP_ENV=production"
                )));
            }
        }
        Ok(())
    }

    /// Production without SMTP would put every OTP code in the log (anyone
    /// reading logs could reset any password): refused unless acknowledged.
    fn check_email(&self) -> Result<(), ConfigError> {
        if self.app_env == AppEnv::Production && self.smtp.host.is_empty() && !self.smtp.log_only {
            return Err(ConfigError::Insecure(
                "SMTP_HOST is not set, so emails (OTP codes included) would be written to the \
                 log; set SMTP_HOST, or EMAIL_LOG_ONLY=true to accept that; refusing to start \
                 with APP_ENV=production"
                    .into(),
            ));
        }
        Ok(())
    }

    /// TOTP secrets must not be encrypted with a key derived from another
    /// secret in production: refused unless 2FA is switched off.
    fn check_two_factor_key(&self) -> Result<(), ConfigError> {
        if self.app_env == AppEnv::Production
            && self.two_factor.enabled
            && !self.two_factor.key_configured
        {
            return Err(ConfigError::Insecure(
                "TOTP_ENCRYPTION_KEY is not set while two-factor authentication is enabled; \
                 set it to 32 random bytes (base64), or TWO_FACTOR_ENABLED=false; refusing to \
                 start with APP_ENV=production"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Start-up warnings: default secrets anywhere, and in production every
    /// protection that is off.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = self.insecure_secret_warnings();
        if self.two_factor.enabled && !self.two_factor.key_configured {
            out.push(
                "TOTP_ENCRYPTION_KEY is not set: TOTP secrets are encrypted with a key derived \
                 from JWT_SECRET (refused in production)"
                    .into(),
            );
        }
        if self.smtp.log_only {
            out.push(
                "EMAIL_LOG_ONLY=true: emails, OTP codes included, are written to the log \
                 instead of being sent; anyone who can read the log can sign in as any user"
                    .into(),
            );
        }
        if self.app_env != AppEnv::Production {
            return out;
        }
        if self.turnstile_secret_key.is_empty() {
            out.push(
                "TURNSTILE_SECRET_KEY is empty: captcha checks are off (any captcha_token is \
                 accepted)"
                    .into(),
            );
        }
        if self.trusted_proxies.is_empty() {
            out.push(
                "TRUSTED_PROXY_CIDRS is empty: X-Forwarded-For is ignored, so behind a load \
                 balancer every client shares its address for rate limits and the \
                 per-IP connection cap"
                    .into(),
            );
        }
        if self.cors_allowed_origins.iter().any(|o| o == "*") {
            out.push(
                "APP_CORS_ALLOWED_ORIGINS is *: any website may call the API from a browser \
                 (without credentials) and open WebSockets"
                    .into(),
            );
        }
        if self.metrics_token.is_none() {
            out.push(
                "METRICS_TOKEN is empty: /metrics is open to anyone who reaches the API port"
                    .into(),
            );
        }
        if self.listener.max_connections_per_ip == 0 {
            out.push("HTTP_MAX_CONNECTIONS_PER_IP is 0: no per-address connection cap".into());
        }
        if self.ws_max_connections_per_user == 0 {
            out.push("WS_MAX_CONNECTIONS_PER_USER is 0: no per-user WebSocket cap".into());
        }
        out
    }

    /// Human-readable warnings about secrets left at their public defaults.
    pub fn insecure_secret_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in [
            ("JWT_SECRET", &self.jwt_secret),
            ("OTP_SECRET", &self.otp_secret),
        ] {
            if value.is_empty() || value == INSECURE_DEFAULT_SECRET {
                out.push(format!(
                    "{name} is left at its insecure default; set it to a long random value"
                ));
            }
        }
        out
    }

    /// Postgres connect options built field by field (no DSN string
    /// concatenation, so passwords with spaces or quotes work).
    pub fn pg_connect_options(&self) -> sqlx::postgres::PgConnectOptions {
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        let ssl = match self.db_sslmode.as_str() {
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            "prefer" => PgSslMode::Prefer,
            "allow" => PgSslMode::Allow,
            _ => PgSslMode::Disable,
        };
        PgConnectOptions::new()
            .host(&self.db_host)
            .port(self.db_port)
            .username(&self.db_user)
            .password(&self.db_password)
            .database(&self.db_name)
            .ssl_mode(ssl)
            .options(SESSION_SETTINGS)
    }

    /// Connect options of the read replica: `DB_READ_URL` as it stands, or
    /// the primary's settings with the replica's host and port.
    pub fn pg_read_connect_options(&self) -> Option<sqlx::postgres::PgConnectOptions> {
        let r = self.db_read.as_ref()?;
        match &r.url {
            // Parsed once already when the configuration was loaded.
            Some(url) => url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .ok()
                .map(|o| o.options(SESSION_SETTINGS)),
            None => Some(self.pg_connect_options().host(&r.host).port(r.port)),
        }
    }

    /// Redis connection info (password and DB number included).
    pub fn redis_connection_info(&self) -> redis::ConnectionInfo {
        redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(self.redis_host.clone(), self.redis_port),
            redis: redis::RedisConnectionInfo {
                db: self.redis_db,
                username: None,
                password: if self.redis_password.is_empty() {
                    None
                } else {
                    Some(self.redis_password.clone())
                },
                protocol: redis::ProtocolVersion::RESP2,
            },
        }
    }

    /// Whether an IP is one of the configured trusted proxies.
    pub fn is_trusted_proxy(&self, ip: &IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let src = VarSource::from_map(&map);
        Config::from_source(&src)
    }

    #[test]
    fn defaults_match_reference_readme() {
        let c = cfg(&[]).expect("defaults load");
        assert_eq!(c.app_port, 8080);
        assert_eq!(c.db_name, "atoitalk");
        assert_eq!(c.jwt_exp_secs, 86400);
        assert_eq!(c.otp_exp_secs, 300);
        assert_eq!(c.media_retention_days, 7.0);
        assert_eq!(c.entity_cleanup_cron, "0 2 * * *");
        assert!(c.db_migrate);
        assert!(c.smtp.send_async);
        assert_eq!(c.cors_allowed_origins, vec!["*"]);
        assert_eq!(c.insecure_secret_warnings().len(), 2);
    }

    #[test]
    fn bad_port_names_the_variable() {
        let err = cfg(&[("APP_PORT", "abc")]).unwrap_err().to_string();
        assert!(err.contains("APP_PORT"), "{err}");
        assert!(err.contains("abc"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected_not_defaulted() {
        for (k, v) in [
            ("DB_MIGRATE", "maybe"),
            ("JWT_EXP", "0"),
            ("OTP_EXP", "-5"),
            ("MEDIA_RETENTION_DAYS", "NaN"),
            ("TRUSTED_PROXY_CIDRS", "10.0.0.1"),
            ("REDIS_DB", "x"),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn production_refuses_default_secrets() {
        let err = cfg(&[("APP_ENV", "production")]).unwrap_err().to_string();
        assert!(err.contains("JWT_SECRET"), "{err}");
        let ok = cfg(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-long-random-value"),
            ("OTP_SECRET", "another-long-value"),
            ("SMTP_HOST", "smtp.example.com"),
            ("TOTP_ENCRYPTION_KEY", &"ab".repeat(32)),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn production_needs_smtp_or_an_explicit_log_only() {
        let key = "ab".repeat(32);
        let secrets = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-long-random-value"),
            ("OTP_SECRET", "another-long-value"),
            ("TOTP_ENCRYPTION_KEY", key.as_str()),
        ];
        let err = cfg(&secrets).unwrap_err().to_string();
        assert!(
            err.contains("SMTP_HOST") && err.contains("EMAIL_LOG_ONLY"),
            "{err}"
        );
        let mut with = secrets.to_vec();
        with.push(("EMAIL_LOG_ONLY", "true"));
        let c = cfg(&with).expect("acknowledged log-only email starts");
        let warnings = c.startup_warnings().join("\n");
        for name in [
            "EMAIL_LOG_ONLY",
            "TURNSTILE_SECRET_KEY",
            "TRUSTED_PROXY_CIDRS",
            "APP_CORS_ALLOWED_ORIGINS",
        ] {
            assert!(
                warnings.contains(name),
                "{name} not warned about: {warnings}"
            );
        }
        assert!(cfg(&[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0")]).is_err());
    }

    #[test]
    fn totp_key_is_required_in_production_unless_2fa_is_off() {
        let base = [
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-long-random-value"),
            ("OTP_SECRET", "another-long-value"),
            ("SMTP_HOST", "smtp.example.com"),
        ];
        let err = cfg(&base).unwrap_err().to_string();
        assert!(err.contains("TOTP_ENCRYPTION_KEY"), "{err}");
        let mut off = base.to_vec();
        off.push(("TWO_FACTOR_ENABLED", "false"));
        assert!(cfg(&off).is_ok());
        let b64 = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        let mut with = base.to_vec();
        with.push(("TOTP_ENCRYPTION_KEY", b64));
        let c = cfg(&with).expect("base64 key accepted");
        assert!(c.two_factor.key_configured);
        assert!(!format!("{:?}", c.two_factor).contains("171"));
        let err = cfg(&[("TOTP_ENCRYPTION_KEY", "short")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TOTP_ENCRYPTION_KEY") && !err.contains("short"),
            "{err}"
        );
        assert_eq!(cfg(&[]).unwrap().two_factor.challenge_ttl_secs, 300);
    }

    #[test]
    fn read_replica_is_off_unless_configured() {
        assert!(cfg(&[]).unwrap().db_read.is_none());
        let c = cfg(&[("DB_PORT", "6000"), ("DB_READ_HOST", "standby")]).unwrap();
        let r = c.db_read.as_ref().expect("replica configured");
        assert_eq!((r.host.as_str(), r.port), ("standby", 6000));
        assert_eq!(r.max_lag, Duration::from_secs(30));
        let opts = c.pg_read_connect_options().unwrap();
        assert_eq!((opts.get_host(), opts.get_port()), ("standby", 6000));
        assert_eq!(opts.get_database(), Some("atoitalk"));
        let c = cfg(&[("DB_READ_URL", "postgres://ro:pw@replica:5433/app")]).unwrap();
        let opts = c.pg_read_connect_options().unwrap();
        assert_eq!((opts.get_host(), opts.get_port()), ("replica", 5433));
        for (k, v) in [
            ("DB_READ_URL", "mysql://x"),
            ("DB_READ_MAX_LAG_SECONDS", "100000"),
        ] {
            let err = cfg(&[("DB_READ_HOST", "standby"), (k, v)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
        let err = cfg(&[("DB_READ_URL", "postgres://u:secretpw@h:x/d")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secretpw"), "{err}");
    }

    #[test]
    fn cron_quotes_are_stripped_and_decimals_allowed() {
        let c = cfg(&[
            ("ENTITY_CLEANUP_CRON", "\"5 4 * * *\""),
            ("MEDIA_RETENTION_DAYS", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.entity_cleanup_cron, "5 4 * * *");
        assert_eq!(c.media_retention_days, 0.5);
    }
}
