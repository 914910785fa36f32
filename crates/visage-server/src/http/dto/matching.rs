//! Verification, identification and feedback on their decisions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{FaceDto, ImageField, LivenessDto, ProbeFaceDto, check_range, lenient_number};
use crate::config::LivenessMode;
use crate::http::error::ApiError;
use crate::service::matching::{Candidate, Identified, IdentifiedAll, Verified};

/// 1:1 verification of `image` against a subject (`subject_id`) or a second image
/// (`reference_image`): exactly one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[schema(value_type = String, format = Binary, required = true)]
    pub image: Option<ImageField>,
    #[schema(nullable = false)]
    pub subject_id: Option<Uuid>,
    #[schema(value_type = String, format = Binary)]
    pub reference_image: Option<ImageField>,
    #[schema(nullable = false)]
    pub liveness: Option<LivenessMode>,
    /// A calibrated false-accept rate target (default: the configured one); the document lists
    /// the targets this service has thresholds for.
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(nullable = false)]
    pub far_target: Option<f64>,
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
    /// The calibration the threshold comes from: the deployment's, or the collection's own
    /// (`feedback:<collection>:<date>`).
    pub calibration: String,
    pub model: String,
    pub subject_id: Option<Uuid>,
    pub face: ProbeFaceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

impl VerifyResponse {
    pub fn new(v: Verified, model: &str, liveness_threshold: f32) -> Self {
        Self {
            verification_id: v.verification_id,
            is_match: v.is_match,
            similarity: v.similarity,
            threshold: v.threshold.point.threshold,
            far_target: v.threshold.point.far,
            calibration: v.threshold.calibration,
            model: model.to_owned(),
            subject_id: v.subject_id,
            face: (&v.probe.face).into(),
            liveness: v.probe.liveness.as_ref().map(|l| LivenessDto::new(l, liveness_threshold)),
        }
    }
}

/// 1:N identification of `image` in a collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRequest {
    #[schema(value_type = String, format = Binary, required = true)]
    pub image: Option<ImageField>,
    /// Collection (gallery); default `default`.
    #[schema(nullable = false, pattern = "^[a-z0-9_-]{1,64}$")]
    pub collection: Option<String>,
    /// Most candidates wanted (default 5); at most `verification.max_top_k` (20) are returned.
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(nullable = false, minimum = 1, maximum = 1000)]
    pub top_k: Option<u32>,
    #[schema(nullable = false)]
    pub liveness: Option<LivenessMode>,
    /// A calibrated false-accept rate target (default: the configured one); the document lists
    /// the targets this service has thresholds for.
    #[serde(default, deserialize_with = "lenient_number")]
    #[schema(nullable = false)]
    pub far_target: Option<f64>,
    /// `one` (default): the face the selection rule picks; `all`: every face of the photo, each
    /// searched on its own (the answer lists `faces`).
    #[schema(nullable = false)]
    pub faces: Option<FacesToIdentify>,
}

/// Which faces of the photo an identification searches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FacesToIdentify {
    #[default]
    One,
    All,
}

impl IdentifyRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        check_range("top_k", self.top_k, 1, 1000)
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
    /// The calibration the threshold comes from: the deployment's, or the collection's own
    /// (`feedback:<collection>:<date>`).
    pub calibration: String,
    pub model: String,
    pub collection: String,
    pub face: ProbeFaceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

/// The answer of an identification: one face, or every face (`faces=all`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum IdentifyAnswer {
    One(IdentifyResponse),
    All(IdentifyAllResponse),
}

/// Every face of the photo with its box and, for those searched, its candidates.
#[derive(Serialize, ToSchema)]
pub struct IdentifyAllResponse {
    pub width: u32,
    pub height: u32,
    /// Best detection first.
    pub faces: Vec<IdentifiedFaceDto>,
    pub threshold: f32,
    pub far_target: f64,
    /// The calibration the threshold comes from.
    pub calibration: String,
    pub model: String,
    pub collection: String,
}

#[derive(Serialize, ToSchema)]
pub struct IdentifiedFaceDto {
    pub face: FaceDto,
    /// Whether the face was searched: it passed the quality gate (and liveness, when
    /// required). An unsearched face has no candidates and no decision.
    pub searched: bool,
    /// Subjects at or above the threshold, best first.
    pub candidates: Vec<CandidateDto>,
    /// This face's decision, for feedback; absent when it was not searched.
    pub verification_id: Option<Uuid>,
}

impl IdentifyAllResponse {
    pub fn new(all: IdentifiedAll, model: &str, liveness_threshold: f32) -> Self {
        let faces = all
            .faces
            .into_iter()
            .map(|f| IdentifiedFaceDto {
                face: FaceDto::new(
                    &f.face,
                    f.liveness.as_ref().map(|l| LivenessDto::new(l, liveness_threshold)),
                ),
                searched: f.searched,
                candidates: f.candidates.into_iter().map(CandidateDto::from).collect(),
                verification_id: f.verification_id,
            })
            .collect();
        Self {
            width: all.width,
            height: all.height,
            faces,
            threshold: all.threshold.point.threshold,
            far_target: all.threshold.point.far,
            calibration: all.threshold.calibration,
            model: model.to_owned(),
            collection: all.collection.to_string(),
        }
    }
}

impl From<Candidate> for CandidateDto {
    fn from(c: Candidate) -> Self {
        Self { subject_id: c.subject_id, external_id: c.external_id, similarity: c.similarity }
    }
}

impl IdentifyResponse {
    pub fn new(i: Identified, model: &str, liveness_threshold: f32) -> Self {
        let candidates = i.candidates.into_iter().map(CandidateDto::from).collect();
        Self {
            verification_id: i.verification_id,
            candidates,
            threshold: i.threshold.point.threshold,
            far_target: i.threshold.point.far,
            calibration: i.threshold.calibration,
            model: model.to_owned(),
            collection: i.collection.to_string(),
            face: (&i.probe.face).into(),
            liveness: i.probe.liveness.as_ref().map(|l| LivenessDto::new(l, liveness_threshold)),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// genuine: the probe was the claimed (or returned) person; impostor: someone else.
    #[schema(value_type = TruthName)]
    pub truth: visage_store::Truth,
    /// Where the truth comes from, e.g. manual_review, chargeback, operator.
    // Not blank as the service trims: U+0085 is whitespace to Rust but not to a schema's `\s`.
    #[schema(min_length = 1, max_length = 64, pattern = "[^\\s\\u0085]")]
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
