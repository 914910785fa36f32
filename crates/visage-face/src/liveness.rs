//! Passive liveness (presentation attack detection) on one photo. Two model families:
//! the MiniFASNet V2 + V1SE ensemble, where each model sees the detector box enlarged by its
//! own scale so together they judge the face and its surroundings (paper edges, screen
//! bezels, moiré), and faceplugin's 128x128 model on the 2.7x crop. [`LivenessKind`] picks
//! one family or the mean of both; the evaluation measures all of them.

use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::backend::{Session, Tensor};
use crate::detect::DetectedFace;
use crate::imaging::{bgr_planes, resize_region_sampled};
use crate::{BoundingBox, FaceError, InferenceBackend, ModelPaths, models};

/// Liveness threshold used when no calibration file says otherwise: the threshold at
/// APCER <= 1% (print attacks) on NUAA development subjects 0001-0004, rounded; reproduce with
/// `visage evaluate-liveness --dir ../shared/data/nuaa-dev --subjects 0001,0002,0003,0004`.
pub const DEFAULT_THRESHOLD: f32 = 0.1;

const FACEPLUGIN_THRESHOLD: f32 = 0.158;
const ENSEMBLE_THRESHOLD: f32 = 0.232;

/// Side of the square crop the MiniFASNet models take.
pub const CROP_SIZE: u32 = 80;

/// Which liveness model scores a face. The default was chosen on NUAA development subjects
/// 0001-0004 (`visage evaluate-liveness`): the ensemble had the lowest EER (0.16%, faceplugin
/// 0.36%, MiniFASNet 1.44%) and no live face refused at APCER <= 1% (MiniFASNet: 3.24%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum LivenessKind {
    /// MiniFASNet V2 (2.7x crop) + V1SE (4.0x crop), softmax averaged.
    Minifasnet,
    /// faceplugin's model (npm `faceplugin-face-recognition-js`), 2.7x crop at 128x128.
    Faceplugin,
    /// The mean of the two families' live probabilities.
    #[default]
    Ensemble,
}

impl LivenessKind {
    fn uses_minifasnet(self) -> bool {
        matches!(self, Self::Minifasnet | Self::Ensemble)
    }

    fn uses_faceplugin(self) -> bool {
        matches!(self, Self::Faceplugin | Self::Ensemble)
    }

    /// Threshold used when no calibration file has one for this kind: each kind's threshold
    /// at APCER <= 1% (print attacks) on NUAA development subjects 0001-0004; reproduce with
    /// `visage --liveness-model KIND calibrate ... --liveness-subjects 0001,0002,0003,0004`.
    pub fn default_threshold(self) -> f32 {
        match self {
            Self::Minifasnet => DEFAULT_THRESHOLD,
            Self::Faceplugin => FACEPLUGIN_THRESHOLD,
            Self::Ensemble => ENSEMBLE_THRESHOLD,
        }
    }

    /// The name the evaluation reports this choice under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minifasnet => "minifasnet",
            Self::Faceplugin => "faceplugin",
            Self::Ensemble => "ensemble",
        }
    }
}

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

/// One liveness network and how its input is cut: the detector box enlarged by `scale`,
/// resized to `side` x `side`, BGR 0..255; `live_class` is the softmax index of a live face.
struct ScaledModel {
    name: &'static str,
    session: Arc<dyn Session>,
    scale: f32,
    side: u32,
    live_class: usize,
}

impl ScaledModel {
    fn load(
        paths: &ModelPaths,
        backend: &dyn InferenceBackend,
        (name, file, scale, side, live_class): (&'static str, &str, f32, u32, usize),
    ) -> Result<Self, FaceError> {
        Ok(Self { name, session: backend.load(&paths.verified(file)?, file)?, scale, side, live_class })
    }

    /// Softmax over the model's three classes.
    fn probabilities(&self, image: &RgbImage, bbox: &BoundingBox) -> Result<[f32; 3], FaceError> {
        let region = crop_region(image.width(), image.height(), bbox, self.scale);
        let crop = resize_region_sampled(image, region, self.side, self.side);
        let side = self.side as usize;
        let input = Tensor::new(vec![1, 3, side, side], bgr_planes(&crop, side, side));
        let outputs = self.session.run(input)?;
        let logits = outputs.first().map(|t| t.data.as_slice()).unwrap_or_default();
        if logits.len() != 3 {
            return Err(FaceError::Inference {
                model: self.name.into(),
                reason: format!("expected 3 logits, got {}", logits.len()),
            });
        }
        Ok(softmax(logits))
    }
}

const MINIFASNET: [(&str, &str, f32, u32, usize); 2] = [
    ("minifasnet_v2", models::MINIFASNET_V2, 2.7, CROP_SIZE, 1),
    ("minifasnet_v1se", models::MINIFASNET_V1SE, 4.0, CROP_SIZE, 1),
];
// Index 0 is "live" in the package's own code (fr_liveness.js); BGR input measured far
// better than RGB on NUAA (docs/accuracy.md has the liveness figures).
const FACEPLUGIN: (&str, &str, f32, u32, usize) = ("faceplugin", models::FACEPLUGIN_LIVENESS, 2.7, 128, 0);

pub struct LivenessModel {
    kind: LivenessKind,
    minifasnet: Vec<ScaledModel>,
    faceplugin: Option<ScaledModel>,
}

impl LivenessModel {
    /// The models `kind` needs; a missing file is an error naming the fix.
    pub fn load(
        paths: &ModelPaths,
        backend: &dyn InferenceBackend,
        kind: LivenessKind,
    ) -> Result<Self, FaceError> {
        let minifasnet = if kind.uses_minifasnet() {
            MINIFASNET
                .into_iter()
                .map(|spec| ScaledModel::load(paths, backend, spec))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let faceplugin =
            kind.uses_faceplugin().then(|| ScaledModel::load(paths, backend, FACEPLUGIN)).transpose()?;
        Ok(Self { kind, minifasnet, faceplugin })
    }

    /// Every model there is (faceplugin when its file is present), scoring as `kind`: for
    /// the evaluation, which compares them all.
    pub fn load_all(
        paths: &ModelPaths,
        backend: &dyn InferenceBackend,
        kind: LivenessKind,
    ) -> Result<Self, FaceError> {
        let all = if paths.exists(models::FACEPLUGIN_LIVENESS) { LivenessKind::Ensemble } else { kind };
        let mut model = Self::load(paths, backend, all)?;
        if kind.uses_faceplugin() && model.faceplugin.is_none() {
            return Err(FaceError::ModelMissing { path: paths.dir.join(models::FACEPLUGIN_LIVENESS) });
        }
        model.kind = kind;
        Ok(model)
    }

    pub fn kind(&self) -> LivenessKind {
        self.kind
    }

    /// Scores one detected face of `image` with the configured kind.
    pub fn score(&self, image: &RgbImage, face: &DetectedFace) -> Result<LivenessScore, FaceError> {
        let minifasnet = self.minifasnet_score(image, face, self.kind.uses_minifasnet())?;
        let faceplugin = match &self.faceplugin {
            Some(model) if self.kind.uses_faceplugin() => Some(model.probabilities(image, &face.bbox)?),
            _ => None,
        };
        Ok(combine(self.kind, minifasnet.map(|(_, score)| score), faceplugin))
    }

    /// Each loaded model's live probability alone, then the combinations: `minifasnet`
    /// (V2 + V1SE), and with faceplugin loaded `ensemble`. What the evaluation compares.
    pub fn score_each(
        &self,
        image: &RgbImage,
        face: &DetectedFace,
    ) -> Result<Vec<(&'static str, f32)>, FaceError> {
        let mut scores = Vec::new();
        let minifasnet = self.minifasnet_score(image, face, true)?;
        if let Some((each, combined)) = &minifasnet {
            scores.extend(self.minifasnet.iter().zip(each).map(|(m, p)| (m.name, p[m.live_class])));
            scores.push((LivenessKind::Minifasnet.name(), combined.live));
        }
        if let Some(model) = &self.faceplugin {
            let probabilities = model.probabilities(image, &face.bbox)?;
            scores.push((LivenessKind::Faceplugin.name(), probabilities[model.live_class]));
            if let Some((_, combined)) = minifasnet {
                let ensemble = combine(LivenessKind::Ensemble, Some(combined), Some(probabilities));
                scores.push((LivenessKind::Ensemble.name(), ensemble.live));
            }
        }
        Ok(scores)
    }

    /// The MiniFASNet models' softmaxes and their average, when loaded and `wanted`.
    #[allow(clippy::type_complexity)]
    fn minifasnet_score(
        &self,
        image: &RgbImage,
        face: &DetectedFace,
        wanted: bool,
    ) -> Result<Option<(Vec<[f32; 3]>, LivenessScore)>, FaceError> {
        if !wanted || self.minifasnet.is_empty() {
            return Ok(None);
        }
        let each = self
            .minifasnet
            .iter()
            .map(|m| m.probabilities(image, &face.bbox))
            .collect::<Result<Vec<_>, _>>()?;
        let score = average(&each);
        Ok(Some((each, score)))
    }
}

/// MiniFASNet's classes 0 and 2 carry the attack type; faceplugin's attack classes have no
/// established meaning, so a faceplugin-only refusal is `unknown`.
fn combine(
    kind: LivenessKind,
    minifasnet: Option<LivenessScore>,
    faceplugin: Option<[f32; 3]>,
) -> LivenessScore {
    let faceplugin_live = faceplugin.map(|p| p[FACEPLUGIN.4]);
    match (kind, minifasnet, faceplugin_live) {
        (LivenessKind::Ensemble, Some(m), Some(f)) => {
            LivenessScore { live: (m.live + f) / 2.0, attack_classes: m.attack_classes }
        }
        (LivenessKind::Faceplugin, _, Some(f)) => LivenessScore { live: f, attack_classes: [0.0, 1.0 - f] },
        (_, Some(m), _) => m,
        _ => unreachable!("the models a kind needs are loaded with it"),
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
