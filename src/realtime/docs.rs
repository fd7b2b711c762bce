//! OpenAPI fragment of the WebSocket endpoint (its events are described by
//! `/asyncapi.yaml`).

use utoipa::OpenApi;

/// Tags of `/ws`; the path comes from the route table in `ws.rs`.
#[derive(OpenApi)]
#[openapi(
    tags((name = "websocket", description = "Real-time events"))
)]
pub struct ApiDoc;
