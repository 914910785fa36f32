//! The outermost layer: a request id for every request (echoed in `x-request-id` and named in
//! every log line and error body), the request's span and trace, its metrics, its log line,
//! and the framework's own bodiless errors turned into the API's error shape.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::http::error::{ApiError, REQUEST_ID};
use crate::observability::telemetry;
use crate::state::AppState;

/// Gives every request an id (kept from `x-request-id` when it is sane), echoes it in the
/// response, and turns the framework's own bodiless errors into the API's error shape.
pub async fn request_context(State(app): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let max_body = app.config.limits.max_body_bytes;
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    app.metrics.http_in_flight.inc();
    let in_flight = InFlight(&app.metrics.http_in_flight);
    // Every log line of the request carries its id and, when tracing, its trace id (never the
    // path: it may hold ids). The otel.* fields are only filled when spans are exported.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    let tracing_on = app.config.tracing.enabled();
    if tracing_on {
        telemetry::trace_request(&span, request.headers(), method.as_str(), &route);
    }
    let request_span = span.clone();
    let mut response = REQUEST_ID
        .scope(request_id.clone(), async move {
            let response = next.run(request).instrument(span).await;
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if is_json || response.status().is_success() {
                return response;
            }
            let status = response.status();
            match status {
                StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge { limit: max_body }.into_response()
                }
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
                    ApiError::Timeout.into_response()
                }
                StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    ApiError::UnsupportedMediaType("expected application/json".into()).into_response()
                }
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                    // The framework's own rejections (malformed JSON, a bad path or query) as text.
                    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
                    ApiError::invalid(String::from_utf8_lossy(&text).into_owned()).into_response()
                }
                _ => response,
            }
        })
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if tracing_on {
        telemetry::trace_response(&request_span, response.status().as_u16());
    }
    drop(in_flight);
    let seconds = started.elapsed().as_secs_f64();
    let status_class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics.http_requests.with_label_values(&[method.as_str(), &route, status_class]).inc();
    app.metrics.http_duration.with_label_values(&[method.as_str(), &route]).observe(seconds);
    // Inside the request span, so that this line carries the trace id too.
    request_span.in_scope(|| {
        tracing::info!(
            request_id,
            %method,
            route,
            status = response.status().as_u16(),
            millis = (seconds * 1000.0).round() as u64,
            "request"
        );
    });
    response
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
