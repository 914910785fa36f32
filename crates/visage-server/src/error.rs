//! One error type for the HTTP layer, one exhaustive mapping to status and stable code, one
//! JSON shape: `{"error": {"code", "message", "request_id", "details"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use visage_face::{FaceError, FaceErrorCode, QualityIssue};
use visage_store::{Entity, StoreError};

tokio::task_local! {
    /// The id of the request being served, so that every error body can name it.
    pub static REQUEST_ID: String;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Face(#[from] FaceError),
    #[error("the face does not meet the quality requirements")]
    LowQuality { reasons: Vec<QualityIssue> },
    #[error("the face was judged a presentation attack (spoof)")]
    SpoofDetected { score: f32, attack_type: Option<&'static str> },
    #[error("the image is not good enough for a liveness decision")]
    LivenessInconclusive { reasons: Vec<QualityIssue> },
    #[error("image #{index}: {source}")]
    InBatch {
        index: usize,
        #[source]
        source: Box<ApiError>,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "the request carries no image (multipart field `image`, an image/* body, or base64 `image` in JSON)"
    )]
    ImageMissing,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type {0:?} is not accepted (multipart/form-data, image/*, application/json)")]
    UnsupportedMediaType(String),
    #[error("subject not found")]
    SubjectNotFound,
    #[error("face not found")]
    FaceNotFound,
    #[error("collection not found")]
    CollectionNotFound,
    #[error("a subject with this external_id already exists in the collection")]
    SubjectExists,
    #[error("the collection already exists")]
    CollectionExists,
    #[error("verification not found")]
    VerificationNotFound,
    #[error("this verification already has feedback")]
    AlreadyLabelled,
    #[error("the subject has no enrolled faces")]
    SubjectHasNoFaces,
    #[error("enrolment needs a consent record (consent.given_by, consent.purpose)")]
    ConsentRequired,
    #[error("the templates were made by recognizer {stored}, the service runs {running}; re-embed first")]
    ModelMismatch { stored: String, running: String },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key may not do that")]
    Forbidden,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still running; retry later")]
    IdempotencyInProgress,
    #[error("rate limit exceeded; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the service is at capacity; retry after {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("storage is unavailable")]
    StorageUnavailable,
    #[error("image storage is unavailable")]
    ImageStorageUnavailable,
    #[error("the request took too long")]
    Timeout,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // A failure retrying will not fix (`Database`) is answered like an outage, as every
            // database error was before the store told them apart; the log says which it was.
            StoreError::Unavailable(_) | StoreError::Database(_) => {
                tracing::error!(error = %err, retryable = err.is_retryable(), "storage failed");
                Self::StorageUnavailable
            }
            StoreError::Conflict(Entity::Subject) => Self::SubjectExists,
            StoreError::Conflict(Entity::Collection) => Self::CollectionExists,
            StoreError::Missing(Entity::Subject) => Self::SubjectNotFound,
            StoreError::Missing(Entity::Collection) => Self::CollectionNotFound,
            StoreError::Conflict(Entity::ApiKey)
            | StoreError::Missing(Entity::ApiKey)
            | StoreError::Corrupt(_) => Self::Internal(err.to_string()),
        }
    }
}

/// Every error code the API can return, for the OpenAPI document.
pub const ERROR_CODES: &[&str] = &[
    "image_decode_failed",
    "image_too_large",
    "unsupported_media_type",
    "no_face_detected",
    "multiple_faces",
    "low_quality",
    "spoof_detected",
    "liveness_inconclusive",
    "invalid_request",
    "image_missing",
    "payload_too_large",
    "subject_not_found",
    "face_not_found",
    "collection_not_found",
    "subject_exists",
    "collection_exists",
    "consent_required",
    "subject_has_no_faces",
    "verification_not_found",
    "already_labelled",
    "model_mismatch",
    "unauthorized",
    "forbidden",
    "idempotency_key_reused",
    "idempotency_in_progress",
    "rate_limited",
    "overloaded",
    "storage_unavailable",
    "image_storage_unavailable",
    "timeout",
    "not_found",
    "method_not_allowed",
    "model_unavailable",
    "inference_failed",
    "internal",
];

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Face(err) => match err.code() {
                FaceErrorCode::ImageDecodeFailed => StatusCode::BAD_REQUEST,
                FaceErrorCode::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                FaceErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                FaceErrorCode::NoFaceDetected | FaceErrorCode::MultipleFaces => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                FaceErrorCode::ModelUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                FaceErrorCode::InferenceFailed => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::LowQuality { .. }
            | Self::SpoofDetected { .. }
            | Self::LivenessInconclusive { .. }
            | Self::ConsentRequired
            | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InBatch { source, .. } => source.status(),
            Self::InvalidRequest(_) | Self::ImageMissing => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::SubjectNotFound | Self::FaceNotFound | Self::CollectionNotFound | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::SubjectExists
            | Self::CollectionExists
            | Self::ModelMismatch { .. }
            | Self::SubjectHasNoFaces
            | Self::AlreadyLabelled
            | Self::IdempotencyInProgress => StatusCode::CONFLICT,
            Self::VerificationNotFound => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded { .. }
            | Self::StorageUnavailable
            | Self::ImageStorageUnavailable
            | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Face(err) => err.code().as_str(),
            Self::LowQuality { .. } => "low_quality",
            Self::SpoofDetected { .. } => "spoof_detected",
            Self::LivenessInconclusive { .. } => "liveness_inconclusive",
            Self::InBatch { source, .. } => source.code(),
            Self::InvalidRequest(_) => "invalid_request",
            Self::ImageMissing => "image_missing",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::SubjectNotFound => "subject_not_found",
            Self::FaceNotFound => "face_not_found",
            Self::CollectionNotFound => "collection_not_found",
            Self::SubjectExists => "subject_exists",
            Self::CollectionExists => "collection_exists",
            Self::ConsentRequired => "consent_required",
            Self::SubjectHasNoFaces => "subject_has_no_faces",
            Self::VerificationNotFound => "verification_not_found",
            Self::AlreadyLabelled => "already_labelled",
            Self::ModelMismatch { .. } => "model_mismatch",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ImageStorageUnavailable => "image_storage_unavailable",
            Self::Timeout => "timeout",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::LowQuality { reasons } | Self::LivenessInconclusive { reasons } => {
                Some(json!({ "reasons": reasons }))
            }
            Self::SpoofDetected { score, attack_type } => {
                Some(json!({ "score": score, "attack_type": attack_type }))
            }
            Self::Face(FaceError::MultipleFaces { count }) => Some(json!({ "faces": count })),
            Self::InBatch { index, source } => {
                let mut details = source.details().unwrap_or_else(|| json!({}));
                details["image_index"] = json!(index);
                Some(details)
            }
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::Overloaded { retry_after } => Some(*retry_after),
            Self::StorageUnavailable
            | Self::ImageStorageUnavailable
            | Self::Timeout
            | Self::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    /// What the client is told: internal failures stay opaque, their cause goes to the log.
    fn public_message(&self) -> String {
        match self {
            Self::Face(err) if !err.is_client_error() => {
                "the face models failed; see the server log".to_owned()
            }
            Self::Internal(_) => "internal error; see the server log".to_owned(),
            other => other.to_string(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see the list in the API description).
    pub code: String,
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
            match &self {
                Self::Internal(cause) => tracing::error!(code = self.code(), %cause, "request failed"),
                Self::Face(err) => tracing::error!(code = self.code(), error = %err, "inference failed"),
                _ => tracing::warn!(code = self.code(), "request refused"),
            }
        }
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
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

pub type ApiResult<T> = Result<T, ApiError>;
