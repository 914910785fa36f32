//! The API's JSON shapes. Request schemas that carry images are documentation: in JSON the
//! image fields hold base64 text, in multipart/form-data they are file parts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use visage_face::{AnalyzedFace, BoundingBox, DetectedFace, QualityReport};
use visage_store::{AuditEvent, Consent, Subject, Template};

use crate::config::LivenessMode;
use crate::input::lenient_number;
use crate::pipeline::LivenessVerdict;

#[derive(Serialize, ToSchema)]
pub struct BoxDto {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl From<BoundingBox> for BoxDto {
    fn from(b: BoundingBox) -> Self {
        Self { x: b.x, y: b.y, width: b.width, height: b.height }
    }
}

/// A facial landmark in image pixels.
#[derive(Serialize, ToSchema)]
pub struct PointDto {
    pub x: f32,
    pub y: f32,
}

/// Quality measures of one face and the checks it failed.
#[derive(Serialize, ToSchema)]
pub struct QualityDto {
    /// True when the face passes every check of the quality gate.
    pub passed: bool,
    /// Failed checks: face_too_small, eyes_too_close, too_blurry, too_dark, too_bright,
    /// poor_exposure, yaw_too_large, roll_too_large.
    pub issues: Vec<String>,
    pub face_width: f32,
    pub face_height: f32,
    pub inter_eye_distance: f32,
    /// Variance of the Laplacian of the aligned face: low means blurred.
    pub sharpness: f32,
    pub brightness: f32,
    pub underexposed_fraction: f32,
    pub overexposed_fraction: f32,
    pub yaw_degrees: f32,
    pub roll_degrees: f32,
}

pub fn issue_names(report: &QualityReport) -> Vec<String> {
    report.issues.iter().map(enum_name).collect()
}

/// The serde name of a unit enum variant.
pub fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl From<&QualityReport> for QualityDto {
    fn from(q: &QualityReport) -> Self {
        let m = &q.measures;
        Self {
            passed: q.passed(),
            issues: issue_names(q),
            face_width: m.face_width,
            face_height: m.face_height,
            inter_eye_distance: m.inter_eye_distance,
            sharpness: m.sharpness,
            brightness: m.brightness,
            underexposed_fraction: m.underexposed_fraction,
            overexposed_fraction: m.overexposed_fraction,
            yaw_degrees: m.yaw_degrees,
            roll_degrees: m.roll_degrees,
        }
    }
}

/// A passive liveness (presentation attack detection) result.
#[derive(Serialize, ToSchema)]
pub struct LivenessDto {
    /// pass (live), fail (spoof) or inconclusive (image too poor to judge).
    pub result: String,
    /// The decision; absent when inconclusive.
    pub live: Option<bool>,
    /// Probability that the face is live, 0..1.
    pub score: Option<f32>,
    /// For a spoof: print, or unknown where the model's class is not tied to an attack type.
    pub attack_type: Option<String>,
    /// The score at or above which a face is live.
    pub threshold: f32,
    /// Why the result is inconclusive (quality checks).
    pub reasons: Vec<String>,
}

impl LivenessDto {
    pub fn new(verdict: &LivenessVerdict, threshold: f32) -> Self {
        let (live, score, attack_type, reasons) = match verdict {
            LivenessVerdict::Live { score } => (Some(true), Some(*score), None, Vec::new()),
            LivenessVerdict::Spoof { score, attack_type } => {
                (Some(false), Some(*score), Some(enum_name(attack_type)), Vec::new())
            }
            LivenessVerdict::Inconclusive { reasons } => {
                (None, None, None, reasons.iter().map(enum_name).collect())
            }
        };
        Self { result: verdict.result().to_owned(), live, score, attack_type, threshold, reasons }
    }
}

/// One detected face.
#[derive(Serialize, ToSchema)]
pub struct FaceDto {
    #[serde(rename = "box")]
    pub bbox: BoxDto,
    /// Right eye, left eye, nose tip, right and left mouth corners (from the viewer's side).
    pub landmarks: Vec<PointDto>,
    /// Detector confidence, 0..1.
    pub score: f32,
    pub quality: QualityDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

impl FaceDto {
    pub fn new(face: &AnalyzedFace, liveness: Option<LivenessDto>) -> Self {
        let DetectedFace { bbox, landmarks, score } = face.detection;
        Self {
            bbox: bbox.into(),
            landmarks: landmarks.iter().map(|p| PointDto { x: p.x, y: p.y }).collect(),
            score,
            quality: (&face.quality).into(),
            liveness,
        }
    }
}

/// The probe face a decision was made on.
#[derive(Serialize, ToSchema)]
pub struct ProbeFaceDto {
    #[serde(rename = "box")]
    pub bbox: BoxDto,
    pub score: f32,
}

impl From<&AnalyzedFace> for ProbeFaceDto {
    fn from(face: &AnalyzedFace) -> Self {
        Self { bbox: face.detection.bbox.into(), score: face.detection.score }
    }
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

/// Image upload (detect, liveness). `image`: a file part in multipart, base64 in JSON, or send
/// the image itself as an `image/*` body.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ImageUpload {
    #[schema(format = Binary)]
    pub image: String,
}

#[derive(Deserialize, Default)]
pub struct DetectParams {
    /// Also judge liveness of every face.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub liveness: Option<bool>,
}

pub fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Text(String),
    }
    match Option::<Either>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Either::Bool(b)) => Ok(Some(b)),
        Some(Either::Text(t)) => match t.as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!("{t:?} is not true or false"))),
        },
    }
}

/// The consent record required to enrol a subject.
#[derive(Deserialize, ToSchema)]
pub struct ConsentInput {
    /// Who gave consent (the person, or a guardian).
    pub given_by: String,
    /// When; defaults to the time of the request.
    pub given_at: Option<DateTime<Utc>>,
    /// What the data may be used for.
    pub purpose: String,
    /// Where the signed consent is kept.
    pub reference: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateSubjectRequest {
    /// The caller's own id for the person, unique in the collection.
    pub external_id: String,
    /// Collection (gallery); default `default`.
    pub collection: Option<String>,
    /// Free JSON kept with the subject (erased with it).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<ConsentInput>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentDto {
    pub given_by: String,
    pub given_at: DateTime<Utc>,
    pub purpose: String,
    pub reference: Option<String>,
}

impl From<&Consent> for ConsentDto {
    fn from(c: &Consent) -> Self {
        Self {
            given_by: c.given_by.clone(),
            given_at: c.given_at,
            purpose: c.purpose.clone(),
            reference: c.reference.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubjectDto {
    pub id: Uuid,
    pub collection: String,
    pub external_id: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub consent: Option<ConsentDto>,
    pub created_at: DateTime<Utc>,
    pub face_count: u32,
}

impl From<&Subject> for SubjectDto {
    fn from(s: &Subject) -> Self {
        Self {
            id: s.id,
            collection: s.collection.to_string(),
            external_id: s.external_id.clone(),
            metadata: s.metadata.clone(),
            consent: s.consent.as_ref().map(ConsentDto::from),
            created_at: s.created_at,
            face_count: s.face_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SubjectPage {
    pub items: Vec<SubjectDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[derive(Deserialize)]
pub struct ListSubjectsQuery {
    pub collection: Option<String>,
    pub external_id: Option<String>,
    pub cursor: Option<Uuid>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub limit: Option<u32>,
}

/// An enrolled face (its template is never returned).
#[derive(Serialize, ToSchema)]
pub struct FaceRecordDto {
    pub id: Uuid,
    pub subject_id: Uuid,
    /// The recognizer that made the template.
    pub model: String,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub quality: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

impl FaceRecordDto {
    pub fn new(t: &Template, liveness: Option<LivenessDto>) -> Self {
        Self {
            id: t.id,
            subject_id: t.subject_id,
            model: t.model.clone(),
            created_at: t.created_at,
            quality: t.quality.clone(),
            liveness,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FaceList {
    pub faces: Vec<FaceRecordDto>,
}

/// Enrolment: one image (`image`) or several (repeated `image` parts, or `images` in JSON);
/// all are stored or none.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct EnrolRequest {
    #[schema(format = Binary)]
    pub image: Option<String>,
    pub images: Option<Vec<String>>,
    pub liveness: Option<LivenessMode>,
}

#[derive(Deserialize, Default)]
pub struct EnrolParams {
    pub liveness: Option<LivenessMode>,
}

/// 1:1 verification of `image` against a subject (`subject_id`) or a second image
/// (`reference_image`).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct VerifyRequest {
    #[schema(format = Binary)]
    pub image: String,
    pub subject_id: Option<Uuid>,
    #[schema(format = Binary)]
    pub reference_image: Option<String>,
    pub liveness: Option<LivenessMode>,
    /// A calibrated false-accept rate target (default: the configured one).
    pub far_target: Option<f64>,
}

#[derive(Deserialize)]
pub struct VerifyParams {
    pub subject_id: Option<Uuid>,
    pub liveness: Option<LivenessMode>,
    #[serde(default, deserialize_with = "lenient_number")]
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
    pub model: String,
    pub subject_id: Option<Uuid>,
    pub face: ProbeFaceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessDto>,
}

/// 1:N identification of `image` in a collection.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct IdentifyRequest {
    #[schema(format = Binary)]
    pub image: String,
    pub collection: Option<String>,
    pub top_k: Option<u32>,
    pub liveness: Option<LivenessMode>,
    pub far_target: Option<f64>,
}

#[derive(Deserialize)]
pub struct IdentifyParams {
    pub collection: Option<String>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub top_k: Option<usize>,
    pub liveness: Option<LivenessMode>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub far_target: Option<f64>,
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
pub struct CreateCollectionRequest {
    /// 1-64 characters of a-z, 0-9, '-' and '_'.
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct CollectionDto {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Templates in the 1:N index.
    pub templates: usize,
}

#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionDto>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventDto {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The API key that acted (its public id).
    pub api_key_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub collection: Option<String>,
    pub subject_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            api_key_id: e.api_key_id,
            action: e.action.as_str().into(),
            outcome: e.outcome.as_str().into(),
            collection: e.collection,
            subject_id: e.subject_id,
            detail: e.detail,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventDto>,
    pub next_cursor: Option<i64>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    pub cursor: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct HealthDto {
    /// ok, or unavailable.
    pub status: String,
    /// Each check by name: ok, or what is wrong.
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// genuine: the probe was the claimed (or returned) person; impostor: someone else.
    #[schema(value_type = String)]
    pub truth: visage_store::Truth,
    /// Where the truth comes from, e.g. manual_review, chargeback, operator (1-64 characters).
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub verification_id: Uuid,
    pub truth: String,
    /// true_accept, false_accept, true_reject or false_reject.
    pub outcome: String,
    /// For false decisions: low, medium or high, by how far the score was past the threshold.
    pub severity: Option<String>,
}
