//! The one route table: every URL, its handler, the role its API key needs (checked before
//! the body is read) and, where it creates something, `Idempotency-Key`.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use visage_store::Role;

use super::error::ApiError;
use super::handlers::{
    analysis, audit, collections, console, destruction, health, keys, matching, metrics, overview, review,
    subjects,
};
use super::middleware::{idempotency, request_context, role};
use super::openapi;
use crate::state::AppState;

/// The whole HTTP service: routes, limits, timeout, panics as 500s, request context.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let timeout = Duration::from_secs(state.config.server.request_timeout_seconds);
    routes(&state)
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("a handler panicked").into_response()))
        .layer(from_fn_with_state(state.clone(), request_context::request_context))
        .with_state(state)
}

fn routes(state: &AppState) -> Router<AppState> {
    let keyed = |needs: Role, route: MethodRouter<AppState>| {
        route.layer(from_fn_with_state(state.clone(), move |s, r, n| role::require(needs, s, r, n)))
    };
    let idempotent = |scope: &'static str, route: MethodRouter<AppState>| {
        route.layer(from_fn_with_state(state.clone(), move |s, r, n| idempotency::idempotent(scope, s, r, n)))
    };
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/read", get(health::read))
        .route("/metrics/prometheus", get(metrics::prometheus_metrics))
        .route("/metrics", get(metrics::prometheus_metrics))
        .merge(openapi::docs(&state.calibration.targets()))
        .merge(console::routes())
        .route("/v1/detect", keyed(Role::Verify, post(analysis::detect)))
        .route("/v1/liveness", keyed(Role::Verify, post(analysis::liveness)))
        .route("/v1/verify", keyed(Role::Verify, post(matching::verify)))
        .route("/v1/identify", keyed(Role::Verify, post(matching::identify)))
        .route("/v1/verifications/{id}/feedback", keyed(Role::Enrol, post(matching::feedback)))
        .route("/v1/decisions", keyed(Role::Enrol, get(review::list_decisions)))
        .route("/v1/decisions/{id}/probe", keyed(Role::Enrol, get(review::probe_image)))
        .route("/v1/overview", keyed(Role::Read, get(overview::overview)))
        .route(
            "/v1/collections",
            keyed(Role::Admin, post(collections::create_collection))
                .merge(keyed(Role::Read, get(collections::list_collections))),
        )
        .route(
            "/v1/subjects",
            keyed(Role::Enrol, idempotent("subject.create", post(subjects::create_subject)))
                .merge(keyed(Role::Read, get(subjects::list_subjects))),
        )
        .route(
            "/v1/subjects/{id}",
            keyed(Role::Read, get(subjects::get_subject))
                .merge(keyed(Role::Enrol, delete(subjects::erase_subject))),
        )
        .route(
            "/v1/subjects/{id}/faces",
            keyed(Role::Enrol, idempotent("face.enrol", post(subjects::enrol_faces)))
                .merge(keyed(Role::Read, get(subjects::list_faces))),
        )
        .route("/v1/subjects/{id}/faces/{face_id}", keyed(Role::Enrol, delete(subjects::delete_face)))
        .route("/v1/subjects/{id}/consent/withdraw", keyed(Role::Enrol, post(subjects::withdraw_consent)))
        .route("/v1/subjects/{id}/export", keyed(Role::Admin, get(subjects::export_subject)))
        .route("/v1/audit", keyed(Role::Admin, get(audit::list_audit)))
        .route("/v1/destruction-records", keyed(Role::Admin, get(destruction::list_destruction_records)))
        .route("/v1/keys", keyed(Role::Admin, post(keys::create_key).merge(get(keys::list_keys))))
        .route("/v1/keys/me", keyed(Role::Read, get(keys::own_key)))
        .route("/v1/keys/{id}", keyed(Role::Admin, delete(keys::revoke_key)))
}
