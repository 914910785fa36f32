use std::path::PathBuf;

/// Everything the face pipeline can refuse or fail at. Each variant maps to a stable code
/// (see [`FaceError::code`]) that the CLI and the HTTP service expose unchanged.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("the image is empty (0 bytes)")]
    EmptyImage,
    #[error("the image is {bytes} bytes, more than the limit of {limit} bytes")]
    ImageTooManyBytes { bytes: usize, limit: usize },
    #[error("the image is {width}x{height} pixels, more than the limit of {limit} pixels")]
    ImageTooLarge { width: u32, height: u32, limit: u64 },
    #[error("decoding the image would need more memory than the pixel limit allows")]
    DecoderMemoryLimit,
    #[error("unsupported image format (JPEG, PNG and WebP are accepted)")]
    UnsupportedFormat,
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("no face was detected")]
    NoFace,
    #[error("{count} faces were detected where exactly one was expected")]
    MultipleFaces { count: usize },
    #[error("model file {path} is missing; run scripts/models/fetch.sh (or set the models directory)")]
    ModelMissing { path: PathBuf },
    #[error(
        "model file {path} is corrupt (sha256 {actual}, expected {expected}); delete it and run scripts/models/fetch.sh"
    )]
    ModelCorrupt { path: PathBuf, actual: String, expected: String },
    #[error("model {model} could not be loaded: {reason}")]
    ModelLoad { model: String, reason: String },
    #[error("inference failed in {model}: {reason}")]
    Inference { model: String, reason: String },
}

/// Stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceErrorCode {
    ImageDecodeFailed,
    ImageTooLarge,
    UnsupportedMediaType,
    NoFaceDetected,
    MultipleFaces,
    ModelUnavailable,
    InferenceFailed,
}

impl FaceErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageDecodeFailed => "image_decode_failed",
            Self::ImageTooLarge => "image_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NoFaceDetected => "no_face_detected",
            Self::MultipleFaces => "multiple_faces",
            Self::ModelUnavailable => "model_unavailable",
            Self::InferenceFailed => "inference_failed",
        }
    }
}

impl FaceError {
    pub fn code(&self) -> FaceErrorCode {
        match self {
            Self::EmptyImage | Self::Decode(_) => FaceErrorCode::ImageDecodeFailed,
            Self::ImageTooManyBytes { .. } | Self::ImageTooLarge { .. } | Self::DecoderMemoryLimit => {
                FaceErrorCode::ImageTooLarge
            }
            Self::UnsupportedFormat => FaceErrorCode::UnsupportedMediaType,
            Self::NoFace => FaceErrorCode::NoFaceDetected,
            Self::MultipleFaces { .. } => FaceErrorCode::MultipleFaces,
            Self::ModelMissing { .. } | Self::ModelCorrupt { .. } | Self::ModelLoad { .. } => {
                FaceErrorCode::ModelUnavailable
            }
            Self::Inference { .. } => FaceErrorCode::InferenceFailed,
        }
    }

    /// True when the caller's input is at fault (a 4xx), false for a server-side failure.
    pub fn is_client_error(&self) -> bool {
        !matches!(self.code(), FaceErrorCode::ModelUnavailable | FaceErrorCode::InferenceFailed)
    }
}
