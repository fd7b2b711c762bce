//! Command-line interface: `serve`, `scheduler`, `migrate`, `jobs run`,
//! `admin promote|demote`, `status`.

mod status;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(name = "atoitalk", version, about = "AtoiTalk chat backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP + WebSocket API (migrates first when DB_MIGRATE=true).
    Serve,
    /// Run the cleanup scheduler (never migrates).
    Scheduler,
    /// Apply database migrations and exit.
    Migrate,
    /// Run scheduler jobs by hand.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Show the state of the deployment: database and migration, Redis,
    /// storage, live API instances with their sockets, last scheduler runs.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum JobsAction {
    /// Run one job now: entity-cleanup, private-chat-gc, media-cleanup,
    /// pending-upload-sweep, idempotency-key-cleanup or audit-cleanup.
    Run { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Give the account with this email the admin role.
    Promote { email: String },
    /// Take the admin role away from the account with this email.
    Demote { email: String },
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load()?;
    // `status` prints a report on stdout, which log lines would clutter.
    if !matches!(cli.command, Command::Status) {
        crate::logging::init(cfg.app_env);
    }
    match cli.command {
        Command::Serve => {
            match crate::infra::fd_limit::raise_nofile() {
                Ok((soft, hard)) => tracing::info!(
                    soft,
                    hard,
                    "open-file limit (sockets this instance can hold)"
                ),
                Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
            }
            let server = crate::app::Server::build(cfg).await?;
            server.run(shutdown_signal()).await
        }
        Command::Scheduler => {
            let mut cfg = cfg;
            cfg.db_migrate = false;
            crate::jobs::run_scheduler(cfg, shutdown_signal()).await
        }
        Command::Status => status::run(&cfg).await,
        Command::Migrate => {
            let db = crate::infra::db::connect(&cfg).await?;
            crate::infra::db::migrate(&db).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Jobs {
            action: JobsAction::Run { name },
        } => {
            let job = crate::jobs::Job::from_name(&name)?;
            let report = crate::jobs::run_once(&cfg, job).await?;
            println!("{report}");
            Ok(())
        }
        Command::Admin { action } => {
            let (email, role) = match action {
                AdminAction::Promote { email } => (email, "admin"),
                AdminAction::Demote { email } => (email, "user"),
            };
            let db = crate::infra::db::connect(&cfg).await?;
            // The same normalisation as sign-up, so the address works as typed.
            let email = crate::auth::fields::normalize_email(&email);
            let updated = sqlx::query(
                "UPDATE users SET role = $1, updated_at = now() WHERE email = $2 AND deleted_at IS NULL",
            )
            .bind(role)
            .bind(&email)
            .execute(&db)
            .await?
            .rows_affected();
            if updated == 0 {
                anyhow::bail!("no active account with email {email:?}; check the address (it must be registered first)");
            }
            println!("{email} now has role {role}");
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
