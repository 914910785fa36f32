//! `/v1/collections`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use visage_store::CollectionId;

use crate::http::dto::{CollectionDto, CollectionList, CreateCollectionRequest};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::service::{Caller, collections};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollectionRequest,
    responses((status = 201, body = CollectionDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Creates a collection (gallery). Admin only.
pub async fn create_collection(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateCollectionRequest>,
) -> ApiResult<(StatusCode, Json<CollectionDto>)> {
    let id = CollectionId::parse(request.id).map_err(ApiError::invalid)?;
    let created = collections::create(&app, &caller, id).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The collections this key may use.
pub async fn list_collections(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CollectionList>> {
    let collections = collections::list(&app, &caller).await?;
    Ok(Json(CollectionList { collections: collections.into_iter().map(Into::into).collect() }))
}
