//! Detection and liveness.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{FaceDto, ImageField, LivenessDto, ProbeFaceDto, lenient_bool};

/// An image (detect, liveness): a file part `image` in multipart, base64 `image` in JSON, or
/// the image itself as an `image/*` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUpload {
    #[schema(value_type = String, format = Binary, required = true)]
    pub image: Option<ImageField>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DetectQuery {
    /// Also judge liveness of every face.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub liveness: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DetectResponse {
    pub width: u32,
    pub height: u32,
    /// Best detection score first.
    pub faces: Vec<FaceDto>,
}

#[derive(Serialize, ToSchema)]
pub struct LivenessResponse {
    pub liveness: LivenessDto,
    pub face: ProbeFaceDto,
}
