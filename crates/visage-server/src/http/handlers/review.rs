//! `/v1/decisions`: the review queue.

use axum::Json;
use axum::extract::{Query, State};

use super::collection_or_default;
use crate::http::dto::{DecisionDto, DecisionPage, DecisionQuery};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, feedback};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/decisions", tag = "review", params(DecisionQuery),
    responses((status = 200, body = DecisionPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Past verifications and identifications with their labels, closest to the threshold first:
/// the review queue. Label one with `POST /v1/verifications/{id}/feedback`.
pub async fn list_decisions(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<DecisionQuery>,
) -> ApiResult<Json<DecisionPage>> {
    query.check()?;
    let collection = query.collection.as_deref().map(|c| collection_or_default(Some(c))).transpose()?;
    let filter = query.filter();
    let (offset, limit) = (filter.offset, filter.limit);
    let items: Vec<DecisionDto> =
        feedback::queue(&app, &caller, collection, filter).await?.into_iter().map(Into::into).collect();
    let next_offset = (items.len() == limit as usize).then_some(offset + limit);
    Ok(Json(DecisionPage { items, next_offset }))
}
