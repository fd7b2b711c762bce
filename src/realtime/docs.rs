//! OpenAPI fragment of the WebSocket endpoint (its events are described by
//! `/asyncapi.yaml`).

use utoipa::OpenApi;

/// `/ws`.
#[derive(OpenApi)]
#[openapi(
    paths(super::ws::ws_handler),
    tags((name = "websocket", description = "Real-time events"))
)]
pub struct ApiDoc;
