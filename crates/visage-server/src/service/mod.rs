//! The rules of the service: who may enrol, when a face is good enough, what a decision is,
//! what erasure removes. Functions over [`crate::state::App`] with no HTTP types, so that a
//! handler, a job or a test calls them alike.

pub mod access;
pub mod analysis;
pub mod audit;
pub mod calibrations;
pub mod caller;
pub mod collections;
pub mod degraded;
pub mod destruction;
pub mod enrolment;
pub mod error;
pub mod feedback;
pub mod gallery_sync;
pub mod images;
pub mod keys;
pub mod matching;
pub mod monitoring;
pub mod retention;
pub mod review;
pub mod subjects;

pub use caller::Caller;
pub use error::{ErrorCode, ServiceError, ServiceResult, SpoofKind};

/// The serde name of a unit enum variant (`RecognizerKind::Sface` is `sface`).
pub fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
