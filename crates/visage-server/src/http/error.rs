//! The HTTP face of every failure: one exhaustive mapping from error to status, stable code
//! and `Retry-After`, and one JSON shape: `{"error": {"code", "message", "request_id",
//! "details"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use visage_face::{FaceError, FaceErrorCode};
use visage_store::StoreError;

use crate::service::{ErrorCode, ServiceError};
use crate::shared::rate_limit::RateLimited;

tokio::task_local! {
    /// The id of the request being served, so that every error body can name it.
    pub static REQUEST_ID: String;
}

/// A refusal of the HTTP layer itself, or a service's failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type {0:?} is not accepted (multipart/form-data, image/*, application/json)")]
    UnsupportedMediaType(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still running; retry later")]
    IdempotencyInProgress,
    #[error("rate limit exceeded; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the request took too long")]
    Timeout,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::Service(err.into())
    }
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        Self::RateLimited { retry_after: limited.retry_after }
    }
}

impl ApiError {
    /// A request the server cannot parse or accept as sent (400 `invalid_request`).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Service(ServiceError::InvalidRequest(message.into()))
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        Self::Service(ServiceError::Internal(cause.into()))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Service(err) => service_status(err),
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyInProgress => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Service(err) => err.code(),
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::IdempotencyInProgress => ErrorCode::IdempotencyInProgress,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Timeout => ErrorCode::Timeout,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::Service(err) => service_details(err),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::Service(ServiceError::Overloaded { retry_after }) => {
                Some(*retry_after)
            }
            Self::Service(ServiceError::StorageUnavailable | ServiceError::ImageStorageUnavailable)
            | Self::Timeout
            | Self::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    /// What the client is told: internal failures stay opaque, their cause goes to the log.
    fn public_message(&self) -> String {
        match self {
            Self::Service(ServiceError::Face(err)) if !err.is_client_error() => {
                "the face models failed; see the server log".to_owned()
            }
            Self::Service(ServiceError::Internal(_)) => "internal error; see the server log".to_owned(),
            other => other.to_string(),
        }
    }
}

fn service_status(err: &ServiceError) -> StatusCode {
    match err {
        ServiceError::Face(err) => match err.code() {
            FaceErrorCode::ImageDecodeFailed => StatusCode::BAD_REQUEST,
            FaceErrorCode::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            FaceErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FaceErrorCode::NoFaceDetected | FaceErrorCode::MultipleFaces => StatusCode::UNPROCESSABLE_ENTITY,
            FaceErrorCode::ModelUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            FaceErrorCode::InferenceFailed => StatusCode::INTERNAL_SERVER_ERROR,
        },
        ServiceError::LowQuality { .. }
        | ServiceError::SpoofDetected { .. }
        | ServiceError::LivenessInconclusive { .. }
        | ServiceError::ConsentRequired
        | ServiceError::ConsentExpired
        | ServiceError::ConsentWithdrawn => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::InBatch { source, .. } => service_status(source),
        ServiceError::InvalidRequest(_) | ServiceError::ImageMissing => StatusCode::BAD_REQUEST,
        ServiceError::SubjectNotFound
        | ServiceError::FaceNotFound
        | ServiceError::CollectionNotFound
        | ServiceError::VerificationNotFound
        | ServiceError::ProbeNotFound
        | ServiceError::KeyNotFound => StatusCode::NOT_FOUND,
        ServiceError::SubjectExists
        | ServiceError::CollectionExists
        | ServiceError::ModelMismatch { .. }
        | ServiceError::SubjectHasNoFaces
        | ServiceError::AlreadyLabelled => StatusCode::CONFLICT,
        ServiceError::Forbidden => StatusCode::FORBIDDEN,
        ServiceError::Overloaded { .. }
        | ServiceError::StorageUnavailable
        | ServiceError::ImageStorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn service_details(err: &ServiceError) -> Option<serde_json::Value> {
    match err {
        ServiceError::LowQuality { reasons } | ServiceError::LivenessInconclusive { reasons } => {
            Some(json!({ "reasons": reasons }))
        }
        ServiceError::SpoofDetected { score, attack_type } => {
            Some(json!({ "score": score, "attack_type": attack_type }))
        }
        ServiceError::Face(FaceError::MultipleFaces { count }) => Some(json!({ "faces": count })),
        ServiceError::InBatch { index, source } => {
            let mut details = service_details(source).unwrap_or_else(|| json!({}));
            details["image_index"] = json!(index);
            Some(details)
        }
        _ => None,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// The request id, also in the `x-request-id` response header.
    pub request_id: String,
    /// Code-specific data, e.g. `reasons` of `low_quality`, `image_index` in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            let code = self.code().as_str();
            match &self {
                Self::Service(ServiceError::Internal(cause)) => {
                    tracing::error!(code, %cause, "request failed")
                }
                Self::Service(ServiceError::Face(err)) => {
                    tracing::error!(code, error = %err, "inference failed")
                }
                _ => tracing::warn!(code, "request refused"),
            }
        }
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                request_id,
                details: self.details(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
