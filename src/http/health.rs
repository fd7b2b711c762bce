//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::response::json_response;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", summary = "Liveness probe",
    responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"data": {"status": "ok"}}))
}

/// `GET /readyz`: Postgres and Redis answer (503 otherwise, naming which);
/// with `REDIS_CLUSTER_NODES`, the cluster serves every slot too.
#[utoipa::path(get, path = "/readyz", tag = "system", summary = "Readiness probe",
    responses((status = 200, description = "PostgreSQL, Redis (with REDIS_CLUSTER_NODES: a Redis Cluster whose every slot is served, `checks.redis_cluster`) and the event bus answer"),
              (status = 503, description = "A dependency is down", body = crate::http::response::schema::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let timeout = std::time::Duration::from_secs(2);
    let db_ok = matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.db)).await,
        Ok(Ok(_))
    );
    let mut redis_ok = matches!(
        tokio::time::timeout(timeout, state.redis.ping()).await,
        Ok(Ok(()))
    );
    // On a cluster one node answering is not enough: every slot must be
    // served (`cluster_state:ok`), else some users' keys are unreachable.
    let cluster = match tokio::time::timeout(timeout, state.redis.cluster_health()).await {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(h))) => Some(h.ok),
        _ => Some(false),
    };
    redis_ok &= cluster != Some(false);
    let bus_ok = state.bus.is_subscribed();
    let mut checks = json!({"postgres": db_ok, "redis": redis_ok, "event_bus": bus_ok});
    if let Some(ok) = cluster {
        checks["redis_cluster"] = json!(ok);
    }
    // Informative only: reads fall back to the primary, so a sick replica
    // does not make the instance unready.
    if let Some(r) = &state.replica {
        checks["postgres_replica"] = json!(r.health());
    }
    if db_ok && redis_ok && bus_ok {
        json_response(
            StatusCode::OK,
            &json!({"data": {"status": "ready", "checks": checks}}),
        )
    } else {
        let mut down = Vec::new();
        if !db_ok {
            down.push("postgres");
        }
        if !redis_ok {
            down.push("redis");
        }
        if !bus_ok {
            down.push("event bus");
        }
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": format!("not ready: {} unreachable", down.join(", ")), "checks": checks}),
            ),
        )
            .into_response()
    }
}
