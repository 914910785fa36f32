//! The role check in front of every keyed route: the caller is authenticated and its role
//! checked before the body is read, so a key without the role learns nothing from a 400 about
//! what the route expects. The caller is kept for the handler.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use visage_store::Role;

use crate::http::error::ApiError;
use crate::service::Caller;
use crate::state::AppState;

/// Lets the request through when its API key holds `role`.
pub async fn require(role: Role, State(app): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &app).await {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = caller.require(role) {
        return ApiError::from(err).into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}
