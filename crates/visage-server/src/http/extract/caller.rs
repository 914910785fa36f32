//! The caller of a request from its API key (`Authorization: Bearer vsg_…` or
//! `X-API-Key: vsg_…`), checked against the store and the key's rate limit.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use visage_store::apikey;

use crate::http::error::ApiError;
use crate::service::Caller;
use crate::state::AppState;

fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get("x-api-key") {
        return value.to_str().ok();
    }
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Already authenticated (and counted) by the role check in front of the handler.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = presented_token(parts).ok_or(ApiError::Unauthorized)?;
        let (id, secret) = apikey::parse(token).ok_or(ApiError::Unauthorized)?;
        let record = state.store.get_api_key(id).await?.ok_or(ApiError::Unauthorized)?;
        if record.revoked_at.is_some() || !apikey::matches(secret, &record.secret_hash) {
            return Err(ApiError::Unauthorized);
        }
        state.shared.check_rate_limit(&record.id).await?;
        Ok(Caller { key_id: record.id, role: record.role, scope: record.scope })
    }
}
