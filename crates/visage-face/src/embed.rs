//! Face recognition: aligned 112x112 crop → L2-normalised embedding; cosine similarity.

use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::FaceError;
use crate::align::ALIGNED_SIZE;
use crate::backend::{InferenceBackend, Session, Tensor};

/// The recognizers visage can run, with the input convention each was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RecognizerKind {
    /// SFace 2021dec (OpenCV zoo): NCHW, RGB 0..255 (normalisation is inside the graph), 128-d.
    Sface,
    /// MobileFaceNet (sirius-ai, from TFLite): NCHW with batch fixed at 2, RGB (x-127.5)/128, 192-d.
    /// Optional: `scripts/models/fetch.sh --mobilefacenet`.
    Mobilefacenet,
}

impl RecognizerKind {
    pub fn model_file(self) -> &'static str {
        match self {
            Self::Sface => crate::models::SFACE,
            Self::Mobilefacenet => crate::models::MOBILEFACENET,
        }
    }

    /// Cosine threshold used when no calibration file says otherwise: the conservative
    /// threshold for FAR 0.1% (the 95% interval of the FAR under 0.1%) on LFW pairsDevTrain
    /// with 300,000 impostor pairs sampled among its images, rounded up to three decimals, in
    /// either precision: bf16 moves the scores a little (SFace 0.3619 in f32, 0.3618 in bf16;
    /// MobileFaceNet 0.4575 and 0.4571), not enough to change the rounded threshold; the
    /// evidence behind it is kept per precision (`visage_calibration`). `visage [--backend
    /// openvino --precision bf16] calibrate --pairs .../pairsDevTrain.txt --impostor-pairs
    /// 300000` reproduces it.
    pub fn default_threshold(self) -> f32 {
        match self {
            Self::Sface => 0.362,
            Self::Mobilefacenet => 0.458,
        }
    }

    /// Whether several faces can go through the model in one inference (MobileFaceNet's
    /// converted graph fixes its batch at two).
    fn batches(self) -> bool {
        matches!(self, Self::Sface)
    }

    pub fn dimension(self) -> usize {
        match self {
            Self::Sface => 128,
            Self::Mobilefacenet => 192,
        }
    }

    fn to_tensor(self, face: &RgbImage) -> Tensor {
        let side = ALIGNED_SIZE as usize;
        let plane = side * side;
        let (scale, offset) = match self {
            Self::Sface => (1.0, 0.0),
            Self::Mobilefacenet => (1.0 / 128.0, -127.5 / 128.0),
        };
        let mut data = vec![0f32; 3 * plane];
        for (x, y, p) in face.enumerate_pixels() {
            let i = y as usize * side + x as usize;
            for c in 0..3 {
                data[c * plane + i] = f32::from(p[c]) * scale + offset;
            }
        }
        match self {
            Self::Sface => Tensor::new(vec![1, 3, side, side], data),
            // The converted graph has its batch fixed at 2: run the face twice, read row one.
            Self::Mobilefacenet => {
                data.extend_from_within(..);
                Tensor::new(vec![2, 3, side, side], data)
            }
        }
    }
}

/// An L2-normalised face embedding; cosine similarity is a dot product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `values`; refuses empty, non-finite or zero vectors.
    pub fn parse(values: Vec<f32>) -> Result<Self, String> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return Err("embedding is empty or has non-finite values".into());
        }
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm <= f32::EPSILON {
            return Err("embedding has zero norm".into());
        }
        Ok(Self(values.into_iter().map(|v| v / norm).collect()))
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn dimension(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity in [-1, 1]. Embeddings of different dimension compare as 0.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum::<f32>().clamp(-1.0, 1.0)
    }
}

pub struct Recognizer {
    session: Arc<dyn Session>,
    kind: RecognizerKind,
}

impl Recognizer {
    pub fn new(session: Arc<dyn Session>, kind: RecognizerKind) -> Self {
        Self { session, kind }
    }

    /// Loads the recognizer's model, opened for batches where the model and the runtime allow.
    pub fn load(
        backend: &dyn InferenceBackend,
        path: &std::path::Path,
        kind: RecognizerKind,
    ) -> Result<Self, FaceError> {
        let file = kind.model_file();
        let session =
            if kind.batches() { backend.load_batched(path, file)? } else { backend.load(path, file)? };
        Ok(Self::new(session, kind))
    }

    /// Faces [`Recognizer::embed_many`] embeds in one inference.
    pub fn batch_size(&self) -> usize {
        if self.kind.batches() { self.session.max_batch().max(1) } else { 1 }
    }

    pub fn kind(&self) -> RecognizerKind {
        self.kind
    }

    /// Embeds one aligned 112x112 RGB face.
    pub fn embed(&self, aligned: &RgbImage) -> Result<Embedding, FaceError> {
        let fail = |reason: String| FaceError::Inference { model: format!("{:?}", self.kind), reason };
        let mut outputs = self.session.run(self.kind.to_tensor(aligned))?;
        let raw = outputs.drain(..).next().ok_or_else(|| fail("no output".into()))?;
        let dimension = self.kind.dimension();
        if raw.data.len() < dimension || raw.data.len() % dimension != 0 {
            return Err(fail(format!("output has {} values, expected rows of {dimension}", raw.data.len())));
        }
        let mut values = raw.data;
        values.truncate(dimension);
        Embedding::parse(values).map_err(fail)
    }

    /// Embeds several aligned faces, in order: [`Recognizer::batch_size`] of them per
    /// inference. Each row is the same network on the same pixels as [`Recognizer::embed`];
    /// a batch may take other kernels, so values agree to rounding, not to the bit.
    pub fn embed_many(&self, faces: &[&RgbImage]) -> Result<Vec<Embedding>, FaceError> {
        let batch = self.batch_size();
        // One face needs no batch tensor (the service's verify path).
        if batch <= 1 || faces.len() <= 1 {
            return faces.iter().map(|face| self.embed(face)).collect();
        }
        let fail = |reason: String| FaceError::Inference { model: format!("{:?}", self.kind), reason };
        let dimension = self.kind.dimension();
        let mut embeddings = Vec::with_capacity(faces.len());
        for chunk in faces.chunks(batch) {
            let tensors: Vec<Tensor> = chunk.iter().map(|face| self.kind.to_tensor(face)).collect();
            let mut shape = tensors[0].shape.clone();
            shape[0] = chunk.len();
            let data = tensors.into_iter().flat_map(|t| t.data).collect();
            let mut outputs = self.session.run(Tensor::new(shape, data))?;
            let raw = outputs.drain(..).next().ok_or_else(|| fail("no output".into()))?;
            if raw.data.len() != chunk.len() * dimension {
                return Err(fail(format!(
                    "output has {} values, expected {} rows of {dimension}",
                    raw.data.len(),
                    chunk.len()
                )));
            }
            for row in raw.data.chunks_exact(dimension) {
                embeddings.push(Embedding::parse(row.to_vec()).map_err(fail)?);
            }
        }
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_normalised_and_cosine_is_their_dot_product() {
        let a = Embedding::parse(vec![3.0, 4.0]).unwrap();
        let b = Embedding::parse(vec![4.0, 3.0]).unwrap();
        assert!((a.as_slice()[0] - 0.6).abs() < 1e-6);
        assert!((a.cosine(&b) - 0.96).abs() < 1e-6);
        assert!((a.cosine(&a) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn degenerate_vectors_are_refused() {
        assert!(Embedding::parse(vec![]).is_err());
        assert!(Embedding::parse(vec![0.0, 0.0]).is_err());
        assert!(Embedding::parse(vec![f32::NAN, 1.0]).is_err());
    }
}
