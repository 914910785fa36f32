//! `/v1/audit`.

use axum::Json;
use axum::extract::{Query, State};

use crate::http::dto::{AuditEventDto, AuditPage, AuditQuery};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, audit};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The audit trail, oldest first. Admin only.
pub async fn list_audit(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    query.check()?;
    let limit = query.limit.unwrap_or(100);
    let events = audit::list(&app, &caller, query.cursor, limit).await?;
    let next_cursor = (events.len() == limit as usize).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(AuditPage { items: events.into_iter().map(AuditEventDto::from).collect(), next_cursor }))
}
