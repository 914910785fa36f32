//! Image quality of one face: measures, and a configurable gate that names each reason
//! for rejection.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::detect::DetectedFace;
use crate::imaging::luma;

/// Measures of one face. Sizes are in pixels of the original image; sharpness, brightness
/// and exposure are taken on the aligned 112x112 crop so that they do not depend on scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityMeasures {
    pub face_width: f32,
    pub face_height: f32,
    pub inter_eye_distance: f32,
    /// Variance of the Laplacian of the aligned crop's luma: low means blurred.
    pub sharpness: f32,
    /// Mean luma of the central face region, 0..255.
    pub brightness: f32,
    /// Fraction of face-region pixels that are nearly black (< 16) or nearly white (> 239).
    pub underexposed_fraction: f32,
    pub overexposed_fraction: f32,
    /// Head turn estimated from the nose's offset between the eyes and mouth corners (an
    /// estimate from 2-D landmarks, good to roughly ±10°).
    pub yaw_degrees: f32,
    /// In-plane rotation of the eye line.
    pub roll_degrees: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityIssue {
    FaceTooSmall,
    EyesTooClose,
    TooBlurry,
    TooDark,
    TooBright,
    PoorExposure,
    YawTooLarge,
    RollTooLarge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    #[serde(flatten)]
    pub measures: QualityMeasures,
    /// Empty when the face passes the gate.
    pub issues: Vec<QualityIssue>,
}

impl QualityReport {
    pub fn passed(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Thresholds of the quality gate. Defaults suit enrolment from ordinary photos.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityGate {
    pub min_face_size: f32,
    pub min_inter_eye_distance: f32,
    pub min_sharpness: f32,
    pub min_brightness: f32,
    pub max_brightness: f32,
    /// Largest accepted share of clipped (under- plus over-exposed) face pixels.
    pub max_clipped_fraction: f32,
    pub max_abs_yaw_degrees: f32,
    pub max_abs_roll_degrees: f32,
}

impl Default for QualityGate {
    fn default() -> Self {
        Self {
            min_face_size: 48.0,
            min_inter_eye_distance: 24.0,
            min_sharpness: 15.0,
            min_brightness: 40.0,
            max_brightness: 220.0,
            max_clipped_fraction: 0.3,
            max_abs_yaw_degrees: 45.0,
            max_abs_roll_degrees: 40.0,
        }
    }
}

impl QualityGate {
    pub fn assess(&self, m: &QualityMeasures) -> Vec<QualityIssue> {
        let checks = [
            (m.face_width.min(m.face_height) < self.min_face_size, QualityIssue::FaceTooSmall),
            (m.inter_eye_distance < self.min_inter_eye_distance, QualityIssue::EyesTooClose),
            (m.sharpness < self.min_sharpness, QualityIssue::TooBlurry),
            (m.brightness < self.min_brightness, QualityIssue::TooDark),
            (m.brightness > self.max_brightness, QualityIssue::TooBright),
            (
                m.underexposed_fraction + m.overexposed_fraction > self.max_clipped_fraction,
                QualityIssue::PoorExposure,
            ),
            (m.yaw_degrees.abs() > self.max_abs_yaw_degrees, QualityIssue::YawTooLarge),
            (m.roll_degrees.abs() > self.max_abs_roll_degrees, QualityIssue::RollTooLarge),
        ];
        checks.into_iter().filter_map(|(failed, issue)| failed.then_some(issue)).collect()
    }

    pub fn report(&self, face: &DetectedFace, aligned: &RgbImage) -> QualityReport {
        let measures = measure(face, aligned);
        QualityReport { issues: self.assess(&measures), measures }
    }
}

/// The central region of the aligned crop that holds the face (eyes to chin, cheek to
/// cheek), leaving out the corners where the warp may have drawn black border.
const FACE_REGION: (u32, u32, u32, u32) = (24, 32, 88, 108);

pub fn measure(face: &DetectedFace, aligned: &RgbImage) -> QualityMeasures {
    let [right_eye, left_eye, nose, mouth_right, mouth_left] = face.landmarks;
    let inter_eye_distance = right_eye.distance(left_eye);
    let roll = (left_eye.y - right_eye.y).atan2(left_eye.x - right_eye.x);
    // Yaw: rotate the nose into the eye line's frame and compare its offset from the
    // midline (eyes and mouth) with half the inter-eye distance.
    let mid_x = (right_eye.x + left_eye.x + mouth_right.x + mouth_left.x) / 4.0;
    let mid_y = (right_eye.y + left_eye.y + mouth_right.y + mouth_left.y) / 4.0;
    let (dx, dy) = (nose.x - mid_x, nose.y - mid_y);
    let along_eyes = dx * roll.cos() + dy * roll.sin();
    let yaw = (along_eyes / (inter_eye_distance / 2.0).max(1.0)).atan();

    let (x0, y0, x1, y1) = FACE_REGION;
    let mut lumas = Vec::with_capacity(((x1 - x0) * (y1 - y0)) as usize);
    for y in y0..y1 {
        for x in x0..x1 {
            lumas.push(luma(aligned.get_pixel(x, y)));
        }
    }
    let n = lumas.len() as f32;
    let brightness = lumas.iter().sum::<f32>() / n;
    let underexposed_fraction = lumas.iter().filter(|&&l| l < 16.0).count() as f32 / n;
    let overexposed_fraction = lumas.iter().filter(|&&l| l > 239.0).count() as f32 / n;

    QualityMeasures {
        face_width: face.bbox.width,
        face_height: face.bbox.height,
        inter_eye_distance,
        sharpness: laplacian_variance(aligned),
        brightness,
        underexposed_fraction,
        overexposed_fraction,
        yaw_degrees: yaw.to_degrees(),
        roll_degrees: roll.to_degrees(),
    }
}

/// Variance of the 4-neighbour Laplacian over the face region.
fn laplacian_variance(aligned: &RgbImage) -> f32 {
    let (x0, y0, x1, y1) = FACE_REGION;
    let l = |x: u32, y: u32| luma(aligned.get_pixel(x, y));
    let values: Vec<f32> = (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .map(|(x, y)| l(x - 1, y) + l(x + 1, y) + l(x, y - 1) + l(x, y + 1) - 4.0 * l(x, y))
        .collect();
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoundingBox, Point};

    fn frontal_face() -> DetectedFace {
        DetectedFace {
            bbox: BoundingBox { x: 50.0, y: 50.0, width: 100.0, height: 120.0 },
            landmarks: [(80.0, 100.0), (120.0, 100.0), (100.0, 120.0), (85.0, 140.0), (115.0, 140.0)]
                .map(|(x, y)| Point::new(x, y)),
            score: 0.9,
        }
    }

    #[test]
    fn a_flat_grey_crop_is_blurry_but_well_exposed() {
        let face = frontal_face();
        let report =
            QualityGate::default().report(&face, &RgbImage::from_pixel(112, 112, image::Rgb([128; 3])));
        assert_eq!(report.measures.sharpness, 0.0);
        assert!((report.measures.brightness - 128.0).abs() < 0.5);
        assert!(report.measures.yaw_degrees.abs() < 1e-3 && report.measures.roll_degrees.abs() < 1e-3);
        assert_eq!(report.issues, vec![QualityIssue::TooBlurry]);
    }

    #[test]
    fn a_dark_small_turned_face_gets_every_matching_reason() {
        let mut face = frontal_face();
        face.bbox.width = 30.0;
        face.landmarks[2].x += 25.0; // nose towards the left eye: strong yaw
        let checker =
            RgbImage::from_fn(112, 112, |x, y| image::Rgb([if (x + y) % 2 == 0 { 0 } else { 40 }; 3]));
        let issues = QualityGate::default().report(&face, &checker).issues;
        for expected in [
            QualityIssue::FaceTooSmall,
            QualityIssue::TooDark,
            QualityIssue::PoorExposure,
            QualityIssue::YawTooLarge,
        ] {
            assert!(issues.contains(&expected), "{expected:?} missing from {issues:?}");
        }
        assert!(!issues.contains(&QualityIssue::TooBlurry));
    }
}
