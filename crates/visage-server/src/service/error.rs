//! What a service refuses or fails with, and the stable code each failure is known by. The
//! HTTP layer maps these to statuses (`http::error`); the command line prints the codes.

use serde::Serialize;
use visage_face::{FaceError, FaceErrorCode, QualityIssue};
use visage_store::{Entity, StoreError};

use crate::inference::InferenceError;

/// Declares [`ErrorCode`] with its wire names and the list of all of them, from one table.
macro_rules! error_codes {
    ($($variant:ident => $name:literal,)*) => {
        /// Every stable, machine-readable error code the service answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// All codes, in the order of the table.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    ImageDecodeFailed => "image_decode_failed",
    ImageTooLarge => "image_too_large",
    UnsupportedMediaType => "unsupported_media_type",
    NoFaceDetected => "no_face_detected",
    MultipleFaces => "multiple_faces",
    LowQuality => "low_quality",
    SpoofDetected => "spoof_detected",
    LivenessInconclusive => "liveness_inconclusive",
    InvalidRequest => "invalid_request",
    ImageMissing => "image_missing",
    PayloadTooLarge => "payload_too_large",
    SubjectNotFound => "subject_not_found",
    FaceNotFound => "face_not_found",
    CollectionNotFound => "collection_not_found",
    SubjectExists => "subject_exists",
    CollectionExists => "collection_exists",
    ConsentRequired => "consent_required",
    ConsentExpired => "consent_expired",
    ConsentWithdrawn => "consent_withdrawn",
    SubjectHasNoFaces => "subject_has_no_faces",
    VerificationNotFound => "verification_not_found",
    ProbeNotFound => "probe_not_found",
    KeyNotFound => "key_not_found",
    AlreadyLabelled => "already_labelled",
    ModelMismatch => "model_mismatch",
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    IdempotencyKeyReused => "idempotency_key_reused",
    IdempotencyInProgress => "idempotency_in_progress",
    RateLimited => "rate_limited",
    Overloaded => "overloaded",
    StorageUnavailable => "storage_unavailable",
    ImageStorageUnavailable => "image_storage_unavailable",
    Timeout => "timeout",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    ModelUnavailable => "model_unavailable",
    InferenceFailed => "inference_failed",
    Internal => "internal",
}

impl From<FaceErrorCode> for ErrorCode {
    fn from(code: FaceErrorCode) -> Self {
        match code {
            FaceErrorCode::ImageDecodeFailed => Self::ImageDecodeFailed,
            FaceErrorCode::ImageTooLarge => Self::ImageTooLarge,
            FaceErrorCode::UnsupportedMediaType => Self::UnsupportedMediaType,
            FaceErrorCode::NoFaceDetected => Self::NoFaceDetected,
            FaceErrorCode::MultipleFaces => Self::MultipleFaces,
            FaceErrorCode::ModelUnavailable => Self::ModelUnavailable,
            FaceErrorCode::InferenceFailed => Self::InferenceFailed,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attack type a refused spoof names: `print` where the model ties its class to printed
/// photos, else `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoofKind {
    Print,
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Face(#[from] FaceError),
    #[error("the face does not meet the quality requirements")]
    LowQuality { reasons: Vec<QualityIssue> },
    #[error("the face was judged a presentation attack (spoof)")]
    SpoofDetected { score: f32, attack_type: SpoofKind },
    #[error("the image is not good enough for a liveness decision")]
    LivenessInconclusive { reasons: Vec<QualityIssue> },
    #[error("image #{index}: {source}")]
    InBatch {
        index: usize,
        #[source]
        source: Box<ServiceError>,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "the request carries no image (multipart field `image`, an image/* body, or base64 `image` in JSON)"
    )]
    ImageMissing,
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
    #[error("no probe image is kept for this decision (retention is off, or it expired or was erased)")]
    ProbeNotFound,
    #[error("API key not found")]
    KeyNotFound,
    #[error("this verification already has feedback")]
    AlreadyLabelled,
    #[error("the subject has no enrolled faces")]
    SubjectHasNoFaces,
    #[error("enrolment needs a consent record (consent.given_by, consent.purpose)")]
    ConsentRequired,
    /// Out of matching until the retention job erases the subject.
    #[error("the subject's consent has expired: it is out of matching and will be erased")]
    ConsentExpired,
    /// Out of matching until the retention job erases the subject.
    #[error("the subject withdrew consent: it is out of matching and will be erased")]
    ConsentWithdrawn,
    #[error("the templates were made by recognizer {stored}, the service runs {running}; re-embed first")]
    ModelMismatch { stored: String, running: String },
    #[error("this API key may not do that")]
    Forbidden,
    #[error("the service is at capacity; retry after {retry_after} s")]
    Overloaded { retry_after: u64 },
    #[error("storage is unavailable")]
    StorageUnavailable,
    #[error("image storage is unavailable")]
    ImageStorageUnavailable,
    /// A failure of ours; the cause goes to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Face(err) => err.code().into(),
            Self::LowQuality { .. } => ErrorCode::LowQuality,
            Self::SpoofDetected { .. } => ErrorCode::SpoofDetected,
            Self::LivenessInconclusive { .. } => ErrorCode::LivenessInconclusive,
            Self::InBatch { source, .. } => source.code(),
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::ImageMissing => ErrorCode::ImageMissing,
            Self::SubjectNotFound => ErrorCode::SubjectNotFound,
            Self::FaceNotFound => ErrorCode::FaceNotFound,
            Self::CollectionNotFound => ErrorCode::CollectionNotFound,
            Self::SubjectExists => ErrorCode::SubjectExists,
            Self::CollectionExists => ErrorCode::CollectionExists,
            Self::VerificationNotFound => ErrorCode::VerificationNotFound,
            Self::ProbeNotFound => ErrorCode::ProbeNotFound,
            Self::KeyNotFound => ErrorCode::KeyNotFound,
            Self::AlreadyLabelled => ErrorCode::AlreadyLabelled,
            Self::SubjectHasNoFaces => ErrorCode::SubjectHasNoFaces,
            Self::ConsentRequired => ErrorCode::ConsentRequired,
            Self::ConsentExpired => ErrorCode::ConsentExpired,
            Self::ConsentWithdrawn => ErrorCode::ConsentWithdrawn,
            Self::ModelMismatch { .. } => ErrorCode::ModelMismatch,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::StorageUnavailable => ErrorCode::StorageUnavailable,
            Self::ImageStorageUnavailable => ErrorCode::ImageStorageUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Wraps the error of one image of a batch, so the answer names which image failed.
    pub fn in_batch(self, index: usize, batch: bool) -> Self {
        if batch { Self::InBatch { index, source: Box::new(self) } } else { self }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            // A database error that is not an outage (a constraint, a query the database
            // refuses) is still answered 503: retrying is harmless, and the log says which.
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

impl From<InferenceError> for ServiceError {
    fn from(err: InferenceError) -> Self {
        match err {
            InferenceError::Overloaded => Self::Overloaded { retry_after: 1 },
            InferenceError::Stopped | InferenceError::Panicked => Self::Internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_to_its_wire_name_once() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(code.as_str()));
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }
}
