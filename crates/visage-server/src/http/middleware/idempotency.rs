//! `Idempotency-Key` on the requests that create something (a subject, an enrolment): a client
//! that retries (after a timeout, a dropped connection, a failover to another replica) with the
//! same key gets the first answer again, replayed, instead of a second enrolment.
//!
//! A key is scoped by API key, route and header value. The first request reserves it; a 2xx
//! answer is kept with a fingerprint of the request for `redis.idempotency_ttl_seconds`, any
//! other answer releases the key so the client can try again. The same key with another
//! request is 422 `idempotency_key_reused`; while the first request runs it is 409
//! `idempotency_in_progress`. Keys live in Redis, shared by the replicas, or in this replica's
//! memory while Redis is unavailable (or not configured). In Redis a reservation is a short
//! lease the running request keeps renewing, so that a replica that dies mid-request frees the
//! key for the client's retry within [`LEASE`](crate::shared::idempotency::LEASE) instead of blocking it for the request timeout.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use visage_wire::idempotency;

use crate::http::error::{ApiError, REQUEST_ID};
use crate::service::Caller;
use crate::shared::idempotency::{Begin, RENEW_EVERY, StoredAnswer, Ticket};
use crate::state::{App, AppState};

pub const HEADER: &str = "idempotency-key";
/// Set on an answer that is a replay of the first one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The POST routes that take the header (the route table puts this layer on them; the OpenAPI
/// document names the header on them).
pub const ROUTES: [&str; 2] = ["/v1/subjects", "/v1/subjects/{id}/faces"];

/// The request's own name, handed to the handler in the request's extensions: the caller's key
/// id, the route's scope and the Idempotency-Key, hashed. A handler whose work commits to the
/// database records it in the same transaction, so a retry after a crash between that commit
/// and the shared record of the answer finds the work done.
#[derive(Debug, Clone)]
pub struct RequestKey(pub String);

/// The header value, checked ([`visage_wire::idempotency::check_key`]). `None` without one.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let values: Vec<&[u8]> = headers.get_all(HEADER).iter().map(HeaderValue::as_bytes).collect();
    idempotency::check_key(&values).map_err(|e| ApiError::invalid(e.to_string()))
}

/// How long a reservation in this replica's memory outlives a request that never finishes:
/// the request timeout twice, and some.
fn local_reservation_ttl(app: &App) -> Duration {
    Duration::from_secs(2 * app.config.server.request_timeout_seconds + 10)
}

/// The middleware of a route whose keys are scoped by `scope`: requests without the header
/// pass untouched.
pub async fn idempotent(
    scope: &'static str,
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(HEADER) {
        return next.run(request).await;
    }
    run_once(app, scope, request, next).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run_once(app: AppState, scope: &str, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // The key belongs to the caller (authenticated by the role check in front of this layer).
    let caller = Caller::from_request_parts(&mut parts, &app).await?;
    let header_key = parse_key(&parts.headers)?.unwrap_or_default();
    let header_hash = format!("{:x}", Sha256::digest(header_key.as_bytes()));
    // Read under the body limit the handler would apply (`DefaultBodyLimit`).
    let mut reading = Request::new(body);
    *reading.extensions_mut() = parts.extensions.clone();
    let bytes = Bytes::from_request(reading, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: app.config.limits.max_body_bytes }
        } else {
            ApiError::invalid(rejection.body_text())
        }
    })?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let path_and_query = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let fingerprint = idempotency::fingerprint(parts.method.as_str(), path_and_query, content_type, &bytes);
    let key = app.shared.key(&["idempotency", caller.key_id.as_str(), scope, header_hash.as_str()]);
    let request_key = format!("{:x}", Sha256::digest(format!("{}\n{scope}\n{header_hash}", caller.key_id)));
    parts.extensions.insert(RequestKey(request_key));
    let begun = app.shared.idempotency_begin(key, fingerprint, local_reservation_ttl(&app)).await;
    let ticket = match begun.map_err(|e| ApiError::internal(e.to_string()))? {
        Begin::Reserved(ticket) => ticket,
        Begin::Replay(answer) => return Ok(replay(answer)),
        Begin::InProgress => return Err(ApiError::IdempotencyInProgress),
        Begin::Reused => return Err(ApiError::IdempotencyKeyReused),
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    // The handler and the bookkeeping run to the end on a task of their own, even when the
    // client hangs up or the request times out: the outcome is then kept (or the key freed)
    // for the retry that follows.
    let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let running = {
        let (app, ticket) = (app.clone(), ticket.clone());
        let work = async move {
            let renewal =
                ticket.on_redis.then(|| RenewalTask(tokio::spawn(renew_lease(app.clone(), ticket.clone()))));
            let response = next.run(request).await;
            drop(renewal);
            settle(&app, &ticket, response).await
        };
        tokio::spawn(REQUEST_ID.scope(request_id, work).in_current_span())
    };
    match running.await {
        Ok(response) => Ok(response),
        Err(err) => {
            app.shared.idempotency_release(&ticket).await;
            Err(ApiError::internal(format!("the request task failed: {err}")))
        }
    }
}

/// The first answer again, marked as a replay.
fn replay(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    if let Some(value) = answer.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// The lease renewal of a running request; stopped when dropped, also by a panic's unwinding.
struct RenewalTask(tokio::task::JoinHandle<()>);

impl Drop for RenewalTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the reservation until aborted when the request is over.
async fn renew_lease(app: AppState, ticket: Ticket) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        ticks.tick().await;
        app.shared.idempotency_renew(&ticket).await;
    }
}

/// Keeps a 2xx answer for replays, or frees the key after any other.
async fn settle(app: &App, ticket: &Ticket, response: Response) -> Response {
    if !response.status().is_success() {
        app.shared.idempotency_release(ticket).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            app.shared.idempotency_release(ticket).await;
            return ApiError::internal(format!("could not read the response: {err}")).into_response();
        }
    };
    let answer = StoredAnswer {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: bytes.to_vec(),
    };
    let ttl = Duration::from_secs(app.config.redis.idempotency_ttl_seconds);
    app.shared.idempotency_complete(ticket, &answer, ttl).await;
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_is_an_invalid_request() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_key(&headers).unwrap(), None);
        headers.append(HEADER, HeaderValue::from_static("order-42"));
        assert_eq!(parse_key(&headers).unwrap(), Some("order-42"));
        headers.append(HEADER, HeaderValue::from_static("order-43"));
        assert_eq!(parse_key(&headers).unwrap_err().code().as_str(), "invalid_request");
    }
}
