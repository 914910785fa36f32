//! YuNet face detection: boxes, five landmarks and a score for every face.

use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::backend::{Session, Tensor};
use crate::imaging::{bgr_planes, resize_rgb};
use crate::{BoundingBox, FaceError, Point};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Faces scoring below this are dropped.
    pub score_threshold: f32,
    /// Overlapping boxes above this IoU are merged into the best-scoring one.
    pub nms_iou: f32,
    /// Images with a longer side are scaled down to it before detection (speed bound).
    pub max_side: u32,
    /// At most this many faces are returned (the best-scoring ones).
    pub max_faces: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self { score_threshold: 0.6, nms_iou: 0.3, max_side: 640, max_faces: 50 }
    }
}

/// One detected face in the coordinates of the input image. Landmarks, in order: right eye
/// (on the image's left), left eye, nose tip, right mouth corner, left mouth corner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectedFace {
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    pub landmarks: [Point; 5],
    pub score: f32,
}

pub struct Detector {
    session: Arc<dyn Session>,
    config: DetectorConfig,
}

const STRIDES: [usize; 3] = [8, 16, 32];

impl Detector {
    pub fn new(session: Arc<dyn Session>, config: DetectorConfig) -> Self {
        Self { session, config }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Every face above the score threshold, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<DetectedFace>, FaceError> {
        let (width, height) = image.dimensions();
        let longest = width.max(height);
        let scale =
            if longest > self.config.max_side { self.config.max_side as f32 / longest as f32 } else { 1.0 };
        let scaled;
        let input = if scale < 1.0 {
            let w = ((width as f32 * scale).round() as u32).max(1);
            let h = ((height as f32 * scale).round() as u32).max(1);
            scaled = resize_rgb(image, w, h);
            &scaled
        } else {
            image
        };
        let outputs = self.session.run(to_bgr_tensor(input))?;
        let (padded_w, padded_h) = padded_size(input.dimensions());
        let candidates = decode_outputs(&outputs, padded_w, padded_h, self.config.score_threshold)
            .map_err(|reason| FaceError::Inference { model: "yunet".into(), reason })?;
        let mut faces = non_max_suppression(candidates, self.config.nms_iou);
        faces.truncate(self.config.max_faces);
        for face in &mut faces {
            rescale(face, 1.0 / scale);
        }
        Ok(faces)
    }
}

fn padded_size((w, h): (u32, u32)) -> (usize, usize) {
    (w.div_ceil(32) as usize * 32, h.div_ceil(32) as usize * 32)
}

/// 1x3xHxW, BGR, 0..255, zero-padded on the right and bottom to multiples of 32.
fn to_bgr_tensor(image: &RgbImage) -> Tensor {
    let (pw, ph) = padded_size(image.dimensions());
    Tensor::new(vec![1, 3, ph, pw], bgr_planes(image, pw, ph))
}

/// Reads YuNet's 12 outputs (cls, obj, bbox, kps at strides 8/16/32, in that order).
fn decode_outputs(
    outputs: &[Tensor],
    pw: usize,
    ph: usize,
    threshold: f32,
) -> Result<Vec<DetectedFace>, String> {
    if outputs.len() != 12 {
        return Err(format!("expected 12 outputs, got {}", outputs.len()));
    }
    let mut faces = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let cols = pw / stride;
        let rows = ph / stride;
        let cells = rows * cols;
        let [cls, obj, bbox, kps] = [level, 3 + level, 6 + level, 9 + level].map(|i| &outputs[i].data);
        if cls.len() != cells || obj.len() != cells || bbox.len() != cells * 4 || kps.len() != cells * 10 {
            return Err(format!("unexpected output sizes at stride {stride}"));
        }
        let s = stride as f32;
        for cell in 0..cells {
            let score = (cls[cell].clamp(0.0, 1.0) * obj[cell].clamp(0.0, 1.0)).sqrt();
            if score < threshold {
                continue;
            }
            let (row, col) = ((cell / cols) as f32, (cell % cols) as f32);
            let b = &bbox[cell * 4..cell * 4 + 4];
            let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
            let (w, h) = (b[2].exp() * s, b[3].exp() * s);
            let k = &kps[cell * 10..cell * 10 + 10];
            let landmarks =
                std::array::from_fn(|i| Point::new((col + k[2 * i]) * s, (row + k[2 * i + 1]) * s));
            faces.push(DetectedFace {
                bbox: BoundingBox { x: cx - w / 2.0, y: cy - h / 2.0, width: w, height: h },
                landmarks,
                score,
            });
        }
    }
    Ok(faces)
}

/// Greedy NMS: keeps the best-scoring box of every overlapping group. Output is sorted by
/// descending score.
fn non_max_suppression(mut faces: Vec<DetectedFace>, iou_threshold: f32) -> Vec<DetectedFace> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<DetectedFace> = Vec::new();
    for face in faces {
        if kept.iter().all(|k| k.bbox.iou(&face.bbox) <= iou_threshold) {
            kept.push(face);
        }
    }
    kept
}

fn rescale(face: &mut DetectedFace, factor: f32) {
    if factor == 1.0 {
        return;
    }
    let b = &mut face.bbox;
    (b.x, b.y, b.width, b.height) = (b.x * factor, b.y * factor, b.width * factor, b.height * factor);
    for p in &mut face.landmarks {
        (p.x, p.y) = (p.x * factor, p.y * factor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, score: f32) -> DetectedFace {
        DetectedFace {
            bbox: BoundingBox { x, y: 0.0, width: 10.0, height: 10.0 },
            landmarks: [Point::new(0.0, 0.0); 5],
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_all_disjoint_ones() {
        let kept = non_max_suppression(vec![face(0.0, 0.7), face(1.0, 0.9), face(50.0, 0.8)], 0.3);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn tensor_is_bgr_and_padded_to_multiples_of_32() {
        let mut image = RgbImage::new(33, 20);
        image.put_pixel(0, 0, image::Rgb([10, 20, 30]));
        let t = to_bgr_tensor(&image);
        assert_eq!(t.shape, vec![1, 3, 32, 64]);
        let plane = 32 * 64;
        assert_eq!((t.data[0], t.data[plane], t.data[2 * plane]), (30.0, 20.0, 10.0));
    }
}
