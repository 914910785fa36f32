//! `/health/live`, `/health/ready` and `/health/read` (no key needed).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::http::dto::HealthDto;
use crate::service::monitoring::{self, Readiness};
use crate::state::AppState;

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = HealthDto)))]
/// The process is up.
pub async fn live() -> Json<HealthDto> {
    Json(HealthDto { status: "ok".into(), checks: serde_json::Map::new() })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthDto),
        (status = 503, description = "not ready, or `degraded` (`checks.mode` read-only)", body = HealthDto)))]
/// Ready to serve everything: models loaded and warmed up, storage answering.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<HealthDto>) {
    let (state, checks) = monitoring::readiness(&app).await;
    answer(state == Readiness::Ready, state, checks)
}

#[utoipa::path(get, path = "/health/read", tag = "health",
    responses((status = 200, description = "`ok`, or `degraded` while the database is unreachable", body = HealthDto),
        (status = 503, description = "not ready", body = HealthDto)))]
/// Ready to verify and identify, from memory while the database cannot be reached: the check
/// a load balancer routes by, so that decisions go on through an outage (writes sent to a
/// read-only replica get 503 `storage_unavailable`).
pub async fn read(State(app): State<AppState>) -> (StatusCode, Json<HealthDto>) {
    let (state, checks) = monitoring::readiness(&app).await;
    answer(state != Readiness::Unavailable, state, checks)
}

fn answer(
    ok: bool,
    state: Readiness,
    checks: serde_json::Map<String, serde_json::Value>,
) -> (StatusCode, Json<HealthDto>) {
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let status = match state {
        Readiness::Ready => "ok",
        Readiness::ReadOnly => "degraded",
        Readiness::Unavailable => "unavailable",
    };
    (code, Json(HealthDto { status: status.into(), checks }))
}
