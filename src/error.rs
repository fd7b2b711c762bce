//! The HTTP-facing error type: every handler returns `Result<_, AppError>`,
//! and this file is the one place where errors become status codes and the
//! contract's `{"error": "..."}` body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::infra::redis::RedisUnavailable;

/// Errors a request can end with. Messages are user-facing; internal causes
/// are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the route's limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429; `retry_after` seconds, when known, becomes the `Retry-After` header.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
    pub fn unauthorized() -> Self {
        Self::Unauthorized("Unauthorized".into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }
    pub fn payload_too_large() -> Self {
        Self::PayloadTooLarge("Request body too large".into())
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::ServiceUnavailable(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Pool exhaustion or a dropped server: the client may retry.
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %e, "database unavailable");
                Self::unavailable("Database unavailable")
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<RedisUnavailable> for AppError {
    fn from(e: RedisUnavailable) -> Self {
        tracing::error!(error = %e.0, "redis unavailable");
        Self::unavailable("Service Unavailable")
    }
}

/// Builds the error envelope for a status and message.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    crate::http::response::json_response(status, &serde_json::json!({ "error": message }))
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                "Internal Server Error".to_string()
            }
            other => other.to_string(),
        };
        let mut res = error_response(status, &message);
        if let Self::TooManyRequests {
            retry_after: Some(secs),
            ..
        } = &self
        {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert("Retry-After", v);
            }
        }
        res
    }
}

/// Shorthand for handler results.
pub type AppResult<T> = Result<T, AppError>;
