//! Verification, identification and feedback on their decisions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ImageField, LivenessDto, ProbeFaceDto, check_range, lenient_number};
use crate::config::LivenessMode;
use crate::http::error::ApiError;

/// The range of a FAR target; only calibrated targets are accepted within it.
const FAR_RANGE: (f64, f64) = (1e-9, 0.5);

/// 1:1 verification of `image` against a subject (`subject_id`) or a second image
/// (`reference_image`): exactly one of the two.
#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    #[schema(value_type = String, format = Binary, required = true)]
    pub image: Option<ImageField>,
    pub subject_id: Option<Uuid>,
    #[schema(value_type = Option<String>, format = Binary)]
    pub reference_image: Option<ImageField>,
    pub liveness: Option<LivenessMode>,
    /// A calibrated false-accept rate target (default: the configured one).
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(minimum = 1e-9, maximum = 0.5)]
    pub far_target: Option<f64>,
}

impl VerifyRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("far_target", self.far_target, FAR_RANGE.0, FAR_RANGE.1)
    }
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Id of this decision, for feedback and audit.
    pub verification_id: Uuid,
    #[serde(rename = "match")]
    pub is_match: bool,
    /// Cosine similarity of the probe and the best template (or the reference image).
    pub similarity: f32,
    /// The threshold used: a match when similarity >= threshold.
    pub threshold: f32,
    /// The false-accept rate this threshold was calibrated for.
    pub far_target: f64,
    pub model: String,
    pub subject_id: Option<Uuid>,
    pub face: ProbeFaceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

/// 1:N identification of `image` in a collection.
#[derive(Deserialize, ToSchema)]
pub struct IdentifyRequest {
    #[schema(value_type = String, format = Binary, required = true)]
    pub image: Option<ImageField>,
    /// Collection (gallery); default `default`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// Most candidates wanted (default 5); at most `verification.max_top_k` (20) are returned.
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(minimum = 1, maximum = 1000)]
    pub top_k: Option<u32>,
    pub liveness: Option<LivenessMode>,
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(minimum = 1e-9, maximum = 0.5)]
    pub far_target: Option<f64>,
}

impl IdentifyRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("top_k", self.top_k, 1, 1000)?;
        check_range("far_target", self.far_target, FAR_RANGE.0, FAR_RANGE.1)
    }
}

#[derive(Serialize, ToSchema)]
pub struct CandidateDto {
    pub subject_id: Uuid,
    pub external_id: String,
    pub similarity: f32,
}

#[derive(Serialize, ToSchema)]
pub struct IdentifyResponse {
    pub verification_id: Uuid,
    /// Subjects at or above the threshold, best first; empty for an unknown person.
    pub candidates: Vec<CandidateDto>,
    pub threshold: f32,
    pub far_target: f64,
    pub model: String,
    pub collection: String,
    pub face: ProbeFaceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

#[derive(Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// genuine: the probe was the claimed (or returned) person; impostor: someone else.
    #[schema(value_type = TruthName)]
    pub truth: visage_store::Truth,
    /// Where the truth comes from, e.g. manual_review, chargeback, operator.
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    pub source: String,
}

/// Ground truth of a decision: genuine (the claimed or returned person) or impostor.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = Truth)]
#[serde(rename_all = "lowercase")]
enum TruthName {
    Genuine,
    Impostor,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub verification_id: Uuid,
    #[schema(value_type = TruthName)]
    pub truth: String,
    /// true_accept, false_accept, true_reject or false_reject.
    pub outcome: String,
    /// For false decisions: low, medium or high, by how far the score was past the threshold.
    pub severity: Option<String>,
}
