//! `/v1/audit`.

use axum::Json;
use axum::extract::{Query, State};

use crate::http::dto::{AuditEventDto, AuditPage, AuditQuery};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, audit};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The audit trail, oldest first, filtered. Admin only; a scoped admin sees its collections' events.
pub async fn list_audit(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    query.check()?;
    let page = audit::list(&app, &caller, query.filter()?, query.cursor, query.limit).await?;
    let items = page.items.into_iter().map(AuditEventDto::from).collect();
    Ok(Json(AuditPage { items, next_cursor: page.next_cursor }))
}
