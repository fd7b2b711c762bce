//! The contract's response envelope: `{"data": ...}`, `{"data": ""}` for
//! bodiless successes and `{"data": [...], "meta": {...}}` for pages.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Serialises `body` as JSON followed by a newline (as the reference does).
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut res = (status, bytes).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            let mut res = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":\"Internal Server Error\"}\n",
            )
                .into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            res
        }
    }
}

/// `{"data": T}` with status 200.
pub struct Data<T>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<T> {
            data: T,
        }
        json_response(StatusCode::OK, &Envelope { data: self.0 })
    }
}

/// `{"data": ""}`: success without a payload.
pub struct Empty;

impl IntoResponse for Empty {
    fn into_response(self) -> Response {
        Data("").into_response()
    }
}

/// Pagination metadata of list responses.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PageMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub has_next: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_cursor: Option<String>,
    pub has_prev: bool,
}

/// `{"data": [...], "meta": {...}}`.
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Envelope<T> {
            data: Vec<T>,
            meta: PageMeta,
        }
        json_response(
            StatusCode::OK,
            &Envelope {
                data: self.data,
                meta: self.meta,
            },
        )
    }
}

/// OpenAPI shapes of the envelopes (documentation only; the runtime types
/// above produce exactly these bodies).
pub mod schema {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// `{"data": T}`.
    #[derive(Serialize, ToSchema)]
    pub struct DataBody<T: ToSchema> {
        pub data: T,
    }

    /// `{"data": [T], "meta": {...}}`.
    #[derive(Serialize, ToSchema)]
    pub struct PageBody<T: ToSchema> {
        pub data: Vec<T>,
        pub meta: PageMetaSchema,
    }

    /// Pagination metadata.
    #[derive(Serialize, ToSchema)]
    pub struct PageMetaSchema {
        pub next_cursor: Option<String>,
        pub has_next: bool,
        pub prev_cursor: Option<String>,
        pub has_prev: bool,
    }

    /// `{"data": ""}`.
    #[derive(Serialize, ToSchema)]
    pub struct EmptyBody {
        /// Always the empty string.
        pub data: String,
    }

    /// `{"error": "..."}`.
    #[derive(Serialize, ToSchema)]
    pub struct ErrorBody {
        pub error: String,
    }
}
