//! Passive liveness (presentation attack detection) with the MiniFASNet V2 + V1SE ensemble:
//! each model sees the detector box enlarged by its own scale, so together they judge the
//! face and its surroundings (paper edges, screen bezels, moiré).

use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

use crate::backend::{Session, Tensor};
use crate::detect::DetectedFace;
use crate::imaging::{bgr_planes, resize_region_sampled};
use crate::{BoundingBox, FaceError, InferenceBackend, ModelPaths, models};

/// Liveness threshold used when no calibration file says otherwise: the threshold at
/// APCER <= 1% (print attacks) on NUAA development subjects 0001-0004, rounded; reproduce with
/// `visage evaluate-liveness --dir ../shared/data/nuaa-dev --subjects 0001,0002,0003,0004`.
pub const DEFAULT_THRESHOLD: f32 = 0.1;

/// Side of the square crop both models take.
pub const CROP_SIZE: u32 = 80;

/// Probability of class 1 ("real") and of the two attack classes, averaged over the models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LivenessScore {
    /// Probability that the face is a live person, 0..1.
    pub live: f32,
    /// Probabilities of the models' two attack classes (0 and 2).
    pub attack_classes: [f32; 2],
}

/// What kind of attack the models' attack classes stand for. Class 0 takes 99% of the print
/// attacks of NUAA (development split); class 2 was not seen on print attacks and no replay
/// data was available to tie it to screens, so it stays `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackType {
    Print,
    Unknown,
}

impl LivenessScore {
    pub fn is_live(&self, threshold: f32) -> bool {
        self.live >= threshold
    }

    /// The attack type the models lean to, when the face is not live at `threshold`.
    pub fn attack_type(&self, threshold: f32) -> Option<AttackType> {
        if self.is_live(threshold) {
            None
        } else if self.attack_classes[0] >= self.attack_classes[1] {
            Some(AttackType::Print)
        } else {
            Some(AttackType::Unknown)
        }
    }
}

struct ScaledModel {
    name: &'static str,
    session: Arc<dyn Session>,
    scale: f32,
}

pub struct LivenessModel {
    models: Vec<ScaledModel>,
}

impl LivenessModel {
    pub fn load(paths: &ModelPaths, backend: &dyn InferenceBackend) -> Result<Self, FaceError> {
        let models = [
            ("minifasnet_v2", models::MINIFASNET_V2, 2.7),
            ("minifasnet_v1se", models::MINIFASNET_V1SE, 4.0),
        ]
        .into_iter()
        .map(|(name, file, scale)| {
            Ok(ScaledModel { name, session: backend.load(&paths.verified(file)?, file)?, scale })
        })
        .collect::<Result<_, FaceError>>()?;
        Ok(Self { models })
    }

    /// Scores one detected face of `image`.
    pub fn score(&self, image: &RgbImage, face: &DetectedFace) -> Result<LivenessScore, FaceError> {
        Ok(average(&self.class_probabilities(image, face)?))
    }

    /// Each model's live probability alone, then the ensemble's (`minifasnet`): what the
    /// evaluation compares to choose the default.
    pub fn score_each(
        &self,
        image: &RgbImage,
        face: &DetectedFace,
    ) -> Result<Vec<(&'static str, f32)>, FaceError> {
        let probabilities = self.class_probabilities(image, face)?;
        let mut scores: Vec<(&'static str, f32)> =
            self.models.iter().zip(&probabilities).map(|(m, p)| (m.name, p[1])).collect();
        scores.push(("minifasnet", average(&probabilities).live));
        Ok(scores)
    }

    /// Softmax over (attack class 0, real, attack class 2) of each model.
    fn class_probabilities(&self, image: &RgbImage, face: &DetectedFace) -> Result<Vec<[f32; 3]>, FaceError> {
        self.models
            .iter()
            .map(|model| {
                let crop = crop_face(image, &face.bbox, model.scale);
                let logits = model.session.run(to_bgr_tensor(&crop))?;
                let logits = logits.first().map(|t| t.data.as_slice()).unwrap_or_default();
                if logits.len() != 3 {
                    return Err(FaceError::Inference {
                        model: model.name.into(),
                        reason: format!("expected 3 logits, got {}", logits.len()),
                    });
                }
                Ok(softmax(logits))
            })
            .collect()
    }
}

fn average(probabilities: &[[f32; 3]]) -> LivenessScore {
    let n = probabilities.len().max(1) as f32;
    let sum = |i: usize| probabilities.iter().map(|p| p[i]).sum::<f32>() / n;
    LivenessScore { live: sum(1), attack_classes: [sum(0), sum(2)] }
}

fn softmax(logits: &[f32]) -> [f32; 3] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: [f32; 3] = std::array::from_fn(|i| (logits[i] - max).exp());
    let total: f32 = exp.iter().sum();
    exp.map(|e| e / total)
}

/// The crop region (x, y, width, height) for `scale`: the box enlarged around its centre,
/// the scale reduced when the enlarged box would not fit the image, then shifted inside it.
/// The region keeps the box's aspect ratio; resizing it to 80x80 squashes it, as in training.
pub fn crop_region(width: u32, height: u32, bbox: &BoundingBox, scale: f32) -> (u32, u32, u32, u32) {
    let (w, h) = (width as f32, height as f32);
    let (box_w, box_h) = (bbox.width.max(1.0), bbox.height.max(1.0));
    let scale = scale.min((h - 1.0) / box_h).min((w - 1.0) / box_w).max(0.0);
    let (new_w, new_h) = (box_w * scale, box_h * scale);
    let centre = bbox.center();
    let (mut left, mut top) = (centre.x - new_w / 2.0, centre.y - new_h / 2.0);
    let (mut right, mut bottom) = (centre.x + new_w / 2.0, centre.y + new_h / 2.0);
    if left < 0.0 {
        right -= left;
        left = 0.0;
    }
    if top < 0.0 {
        bottom -= top;
        top = 0.0;
    }
    if right > w - 1.0 {
        left -= right - (w - 1.0);
        right = w - 1.0;
    }
    if bottom > h - 1.0 {
        top -= bottom - (h - 1.0);
        bottom = h - 1.0;
    }
    let (x0, y0) = (left.max(0.0) as u32, top.max(0.0) as u32);
    let (x1, y1) = ((right.max(0.0) as u32).min(width - 1), (bottom.max(0.0) as u32).min(height - 1));
    (x0, y0, (x1 - x0 + 1).max(1), (y1 - y0 + 1).max(1))
}

pub fn crop_face(image: &RgbImage, bbox: &BoundingBox, scale: f32) -> RgbImage {
    let region = crop_region(image.width(), image.height(), bbox, scale);
    resize_region_sampled(image, region, CROP_SIZE, CROP_SIZE)
}

/// 1x3x80x80, BGR, 0..255.
fn to_bgr_tensor(crop: &RgbImage) -> Tensor {
    let side = CROP_SIZE as usize;
    Tensor::new(vec![1, 3, side, side], bgr_planes(crop, side, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x: f32, y: f32, width: f32, height: f32) -> BoundingBox {
        BoundingBox { x, y, width, height }
    }

    #[test]
    fn a_central_face_gets_the_full_enlarged_box() {
        // 40x50 box centred at (320, 240), scale 2.7: 108x135 around the centre.
        let (x, y, w, h) = crop_region(640, 480, &bbox(300.0, 215.0, 40.0, 50.0), 2.7);
        assert_eq!((x, y), (266, 172));
        assert!((w as i32 - 109).abs() <= 1 && (h as i32 - 136).abs() <= 1, "{w}x{h}");
    }

    #[test]
    fn a_face_at_the_border_is_shifted_inside_the_image() {
        let (x, y, w, h) = crop_region(640, 480, &bbox(0.0, 400.0, 60.0, 70.0), 2.7);
        assert_eq!(x, 0, "shifted right to the left edge");
        assert!(y + h <= 480, "bottom inside: {y}+{h}");
        assert!((w as i32 - 163).abs() <= 1 && (h as i32 - 190).abs() <= 1, "{w}x{h}");
    }

    #[test]
    fn a_large_face_gets_the_largest_scale_that_fits() {
        // 4.0 x 300 px would exceed 480: the scale drops to 479/300 and the crop spans the height.
        let (_, y, w, h) = crop_region(640, 480, &bbox(200.0, 100.0, 240.0, 300.0), 4.0);
        assert_eq!((y, h), (0, 480));
        assert!((w as f32 - 240.0 * 479.0 / 300.0).abs() <= 2.0, "{w}");
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[1.0, 3.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[1] > p[0] && p[0] > p[2]);
    }
}
