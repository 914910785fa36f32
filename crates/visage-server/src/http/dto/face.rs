//! A face as answers describe it: box, landmarks, quality, liveness.

use serde::Serialize;
use utoipa::ToSchema;
use visage_face::{AnalyzedFace, BoundingBox, DetectedFace, QualityReport};

use crate::inference::LivenessVerdict;
use crate::service::enum_name;

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
