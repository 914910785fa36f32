//! `/v1/keys`: API keys managed by admins.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::http::dto::{CreateKeyRequest, CreatedKeyDto, KeyDto, KeyList};
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::{Caller, keys};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Creates a key; its token is in this answer only. Admin only.
pub async fn create_key(
    State(app): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKeyDto>)> {
    let created = keys::create(&app, &caller, request.try_into()?).await?;
    let answer = CreatedKeyDto { key: KeyDto::from(&created.record), token: created.token.to_string() };
    Ok((StatusCode::CREATED, Json(answer)))
}

#[utoipa::path(get, path = "/v1/keys/me", tag = "keys",
    responses((status = 200, body = KeyDto), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The key this request was made with: its name, role and collections (never its secret), so a
/// client can show what it may do. Any valid key.
pub async fn own_key(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<KeyDto>> {
    Ok(Json(KeyDto::from(&keys::own(&app, &caller).await?)))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = KeyList), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// The keys this admin may manage, revoked ones included; never their secrets.
pub async fn list_keys(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<KeyList>> {
    let keys = keys::list(&app, &caller).await?;
    Ok(Json(KeyList { keys: keys.iter().map(KeyDto::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "the key's public id")),
    responses((status = 204, description = "revoked"), (status = "4XX", body = ErrorBody)), security(("api_key" = [])))]
/// Revokes a key at once: its next request is 401.
pub async fn revoke_key(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    keys::revoke(&app, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
