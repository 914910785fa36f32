//! The visage face pipeline: decode → detect → align → embed → compare, with quality
//! measures. Pure computation on bytes and model files: no network, no database.

pub mod align;
pub mod backend;
pub mod decode;
pub mod detect;
pub mod embed;
mod engine;
mod error;
pub mod geometry;
pub mod imaging;
pub mod liveness;
pub mod models;
pub mod quality;

#[cfg(feature = "tract")]
pub use backend::TractBackend;
pub use backend::{BackendKind, Fallback, InferenceBackend, Numerics, Precision, Session, Tensor};
pub use decode::{DecodeLimits, decode_image};
pub use detect::{DetectedFace, Detector, DetectorConfig};
pub use embed::{Embedding, Recognizer, RecognizerKind};
pub use engine::{
    AnalyzedFace, EngineConfig, FaceEngine, FaceSelection, MeasuredFace, PerImage, select_face,
};
pub use error::{FaceError, FaceErrorCode};
pub use geometry::{BoundingBox, Point};
pub use liveness::{LivenessKind, LivenessModel, LivenessScore};
pub use models::ModelPaths;
pub use quality::{QualityGate, QualityIssue, QualityReport};
