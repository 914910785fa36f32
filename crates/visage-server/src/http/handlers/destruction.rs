//! `/v1/destruction-records`.

use axum::Json;
use axum::extract::{Query, State};

use crate::http::dto::{DestructionQuery, DestructionRecordPage};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, destruction};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/destruction-records", tag = "audit", params(DestructionQuery),
    responses((status = 200, body = DestructionRecordPage), (status = "4XX", body = ErrorBody)),
    security(("api_key" = [])))]
/// Records of destroyed personal data (erasures, face deletions), oldest first, in a date range.
/// Admin of every collection only.
pub async fn list_destruction_records(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<DestructionQuery>,
) -> ApiResult<Json<DestructionRecordPage>> {
    query.check()?;
    let filter = query.filter();
    let (offset, limit) = (filter.offset, filter.limit);
    let records = destruction::list(&app, &caller, filter).await?;
    let next_offset = (records.len() == limit as usize).then_some(offset + limit);
    Ok(Json(DestructionRecordPage { items: records.into_iter().map(Into::into).collect(), next_offset }))
}
