//! `/v1/overview`: the console's first page.

use axum::Json;
use axum::extract::State;

use crate::http::dto::OverviewDto;
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, monitoring};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/overview", tag = "health",
    responses((status = 200, body = OverviewDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Readiness, enrolled counts per collection, API traffic and latency, liveness results and the
/// error rates from labelled decisions, on one page.
pub async fn overview(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<OverviewDto>> {
    Ok(Json(monitoring::overview(&app, &caller).await?.into()))
}
