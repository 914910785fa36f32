//! The caller of a request from its API key (`Authorization: Bearer vsg_…` or
//! `X-API-Key: vsg_…`), checked against the store and the key's rate limit.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use visage_store::ApiKeyRecord;
use visage_wire::api_key;

use crate::http::error::ApiError;
use crate::service::{Caller, ServiceError};
use crate::state::AppState;

fn presented_token(parts: &Parts) -> Option<&str> {
    let header = |name| parts.headers.get(name).map(axum::http::HeaderValue::as_bytes);
    api_key::presented(header("x-api-key"), header(axum::http::header::AUTHORIZATION.as_str()))
}

/// The key from the database; while it cannot be reached, as this replica last read it (a key
/// it never read is refused as 503, not 401: it may well exist).
async fn key_record(state: &AppState, id: &str) -> Result<Option<ApiKeyRecord>, ApiError> {
    let remembered = || state.outage.known_key(id).map(Some).ok_or(ServiceError::StorageUnavailable.into());
    if state.outage.serving_from_memory() {
        return remembered();
    }
    match state.store.get_api_key(id).await {
        Ok(record) => {
            // A key in use is known at once, not only after the watcher's next read; a read
            // lock when it is known already, which is every request but the first.
            if let Some(record) = &record {
                state.outage.remember_new_key(record);
            }
            Ok(record)
        }
        Err(err) if state.outage.read_from_memory_after(&err) => remembered(),
        Err(err) => Err(err.into()),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Already authenticated (and counted) by the role check in front of the handler.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = presented_token(parts).ok_or(ApiError::Unauthorized)?;
        let (id, secret) = api_key::parse(token).ok_or(ApiError::Unauthorized)?;
        let record = key_record(state, id).await?.ok_or(ApiError::Unauthorized)?;
        if record.revoked_at.is_some() || !api_key::matches(secret, &record.secret_hash) {
            return Err(ApiError::Unauthorized);
        }
        state.shared.check_rate_limit(&record.id).await?;
        Ok(Caller { key_id: record.id, role: record.role, scope: record.scope })
    }
}
