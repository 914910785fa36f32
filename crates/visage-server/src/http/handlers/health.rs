//! `/health/live` and `/health/ready` (no key needed).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::http::dto::HealthDto;
use crate::service::monitoring;
use crate::state::AppState;

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = HealthDto)))]
/// The process is up.
pub async fn live() -> Json<HealthDto> {
    Json(HealthDto { status: "ok".into(), checks: serde_json::Map::new() })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = HealthDto), (status = 503, description = "not ready", body = HealthDto)))]
/// Ready to serve: models loaded and warmed up, storage answering.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<HealthDto>) {
    let (ok, checks) = monitoring::readiness(&app).await;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(HealthDto { status: if ok { "ok" } else { "unavailable" }.into(), checks }))
}
