//! `/metrics/prometheus` (and `/metrics`): the Prometheus scrape, no key needed.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::service::monitoring;
use crate::state::AppState;

#[utoipa::path(get, path = "/metrics/prometheus", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
/// Prometheus metrics (no key needed; also at `/metrics`).
pub async fn prometheus_metrics(State(app): State<AppState>) -> impl IntoResponse {
    monitoring::refresh_gauges(&app).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}
