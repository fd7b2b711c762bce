//! Outgoing email: SMTP through lettre, or the log when no `SMTP_HOST` is set.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpConfig;

/// One HTML email.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub html: String,
}

/// Delivery failures.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("smtp delivery failed: {0}")]
    Smtp(String),
}

/// Sends emails.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &Email) -> Result<(), EmailError>;
}

/// Builds the SMTP mailer, or the log mailer when `SMTP_HOST` is empty,
/// counted for the metrics.
pub fn build(cfg: &SmtpConfig) -> anyhow::Result<Arc<dyn Mailer>> {
    if cfg.host.is_empty() || cfg.log_only {
        return Ok(Arc::new(Counted(LogMailer)));
    }
    Ok(Arc::new(Counted(SmtpMailer::new(cfg)?)))
}

/// Counts each send's outcome (`emails_total{result}`).
struct Counted<M>(M);

#[async_trait::async_trait]
impl<M: Mailer> Mailer for Counted<M> {
    async fn send(&self, email: &Email) -> Result<(), EmailError> {
        let res = self.0.send(email).await;
        crate::infra::metrics::email(res.is_ok());
        res
    }
}

/// Development mailer: writes each email to the log instead of sending it.
pub struct LogMailer;

#[async_trait::async_trait]
impl Mailer for LogMailer {
    async fn send(&self, email: &Email) -> Result<(), EmailError> {
        tracing::info!(
            to = %email.to,
            subject = %email.subject,
            body = %strip_tags(&email.html),
            "SMTP_HOST is not set: email written to the log instead of being sent"
        );
        Ok(())
    }
}

/// Collapses HTML to its text so a logged email stays readable.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    let mut in_style = false;
    let lower = html.to_ascii_lowercase();
    let bytes = html.char_indices();
    for (i, c) in bytes {
        if c == '<' {
            in_tag = true;
            if lower[i..].starts_with("<style") {
                in_style = true;
            } else if lower[i..].starts_with("</style") {
                in_style = false;
            }
            continue;
        }
        if c == '>' {
            in_tag = false;
            out.push(' ');
            continue;
        }
        if !in_tag && !in_style {
            out.push(c);
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SMTP delivery with opportunistic STARTTLS (implicit TLS on port 465), AUTH
/// only when credentials are configured, and retries with back-off.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(cfg: &SmtpConfig) -> anyhow::Result<Self> {
        let tls_params = TlsParameters::new(cfg.host.clone())?;
        let tls = if cfg.port == 465 {
            Tls::Wrapper(tls_params)
        } else {
            Tls::Opportunistic(tls_params)
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(10)));
        if !cfg.user.is_empty() || !cfg.password.is_empty() {
            builder = builder.credentials(Credentials::new(cfg.user.clone(), cfg.password.clone()));
        }
        let from_email = if cfg.from_email.is_empty() {
            "no-reply@localhost".to_string()
        } else {
            cfg.from_email.clone()
        };
        let name = (!cfg.from_name.is_empty()).then(|| cfg.from_name.clone());
        let from = Mailbox::new(
            name,
            from_email
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid SMTP_FROM_EMAIL {from_email:?}: {e}"))?,
        );
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), EmailError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|_| EmailError::Address(email.to.clone()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .header(ContentType::TEXT_HTML)
            .body(email.html.clone())
            .map_err(|e| EmailError::Smtp(e.to_string()))?;
        let mut delay = Duration::from_secs(1);
        let mut last_err = String::new();
        for attempt in 1..=4 {
            match self.transport.send(message.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last_err = e.to_string();
                    tracing::warn!(attempt, error = %last_err, "smtp send failed");
                    if attempt < 4 {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        Err(EmailError::Smtp(last_err))
    }
}
