//! The face engine: loaded models plus the configuration that turns image bytes into
//! detected faces, quality reports and embeddings.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::align::align_face;
use crate::detect::{DetectedFace, Detector, DetectorConfig};
use crate::embed::{Embedding, Recognizer, RecognizerKind};
use crate::quality::{QualityGate, QualityReport};
use crate::{DecodeLimits, FaceError, InferenceBackend, ModelPaths, Numerics, decode_image, models};

/// Which face of a photo a single-face operation (embed, compare) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FaceSelection {
    /// Exactly one face must be present, else `multiple_faces`.
    Single,
    /// The face whose box centre is nearest the image centre (portraits with bystanders).
    #[default]
    Central,
    /// The face with the largest box.
    Largest,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub recognizer: RecognizerKind,
    pub detector: DetectorConfig,
    pub decode: DecodeLimits,
    pub quality: QualityGate,
    pub selection: FaceSelection,
    /// Horizontal-flip test-time augmentation: embed the aligned face and its mirror image and
    /// keep their normalised sum. Off by default: it doubles the embedding time and measured
    /// no gain (docs/accuracy.md); `visage --flip-tta evaluate` measures it.
    pub flip_tta: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            recognizer: RecognizerKind::Sface,
            detector: DetectorConfig::default(),
            decode: DecodeLimits::default(),
            quality: QualityGate::default(),
            selection: FaceSelection::default(),
            flip_tta: false,
        }
    }
}

/// One face with its quality report and embedding.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzedFace {
    #[serde(flatten)]
    pub detection: DetectedFace,
    pub quality: QualityReport,
    #[serde(skip)]
    pub embedding: Embedding,
}

/// A face aligned and measured, not embedded yet ([`FaceEngine::measure`]).
#[derive(Debug, Clone)]
pub struct MeasuredFace {
    pub detection: DetectedFace,
    pub quality: QualityReport,
    /// The 112x112 crop the recognizer embeds.
    aligned: RgbImage,
}

impl MeasuredFace {
    fn with(self, embedding: Embedding) -> AnalyzedFace {
        AnalyzedFace { detection: self.detection, quality: self.quality, embedding }
    }
}

/// One entry per image, in order: what the caller keeps of the image and its face, or why
/// the image gave none.
pub type PerImage<T, Face> = Vec<Result<(T, Face), FaceError>>;

pub struct FaceEngine {
    detector: Detector,
    recognizer: Recognizer,
    config: EngineConfig,
    numerics: Numerics,
}

impl FaceEngine {
    /// Loads and checks every model the configuration needs.
    pub fn load(
        paths: &ModelPaths,
        backend: &dyn InferenceBackend,
        config: EngineConfig,
    ) -> Result<Self, FaceError> {
        let detector = backend.load(&paths.verified(models::YUNET)?, "yunet")?;
        let recognizer_file = config.recognizer.model_file();
        let recognizer = Recognizer::load(backend, &paths.verified(recognizer_file)?, config.recognizer)?;
        Ok(Self {
            detector: Detector::new(detector, config.detector),
            recognizer,
            config,
            numerics: backend.numerics(),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The backend and precision computing this engine's scores: what its thresholds must
    /// have been calibrated with.
    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, FaceError> {
        decode_image(bytes, &self.config.decode)
    }

    /// Every face in the image, best detection score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<DetectedFace>, FaceError> {
        self.detector.detect(image)
    }

    /// Aligns, measures and embeds one detected face.
    pub fn analyze(&self, image: &RgbImage, face: &DetectedFace) -> Result<AnalyzedFace, FaceError> {
        Ok(self.embed_measured(vec![self.measure(image, face)])?.pop().expect("one face in, one out"))
    }

    /// Aligns and measures one detected face: what picking a face by its quality needs, before
    /// the recognizer runs.
    pub fn measure(&self, image: &RgbImage, face: &DetectedFace) -> MeasuredFace {
        let aligned = align_face(image, &face.landmarks);
        let quality = self.config.quality.report(face, &aligned);
        MeasuredFace { detection: *face, quality, aligned }
    }

    /// Embeds measured faces, [`FaceEngine::batch_size`] of them per inference, in order.
    /// Each embedding is the one [`FaceEngine::analyze`] gives, to rounding (a batch may take
    /// other kernels).
    pub fn embed_measured(&self, faces: Vec<MeasuredFace>) -> Result<Vec<AnalyzedFace>, FaceError> {
        let aligned: Vec<&RgbImage> = faces.iter().map(|face| &face.aligned).collect();
        let mut embeddings = self.recognizer.embed_many(&aligned)?;
        if self.config.flip_tta {
            let flipped: Vec<RgbImage> =
                aligned.iter().map(|face| image::imageops::flip_horizontal(*face)).collect();
            let mirrored = self.recognizer.embed_many(&flipped.iter().collect::<Vec<_>>())?;
            embeddings = embeddings
                .iter()
                .zip(&mirrored)
                .map(|(embedding, mirror)| sum_of(embedding, mirror))
                .collect::<Result<_, _>>()?;
        }
        Ok(faces.into_iter().zip(embeddings).map(|(face, embedding)| face.with(embedding)).collect())
    }

    /// The face a single-face operation uses, by the configured selection rule.
    pub fn select<'f>(
        &self,
        image: &RgbImage,
        faces: &'f [DetectedFace],
    ) -> Result<&'f DetectedFace, FaceError> {
        select_face(faces, image.dimensions(), self.config.selection)
    }

    /// Decode → detect → select → align → measure → embed.
    pub fn analyze_bytes(&self, bytes: &[u8]) -> Result<AnalyzedFace, FaceError> {
        let image = self.decode(bytes)?;
        let faces = self.detect(&image)?;
        let face = self.select(&image, &faces)?;
        self.analyze(&image, face)
    }

    /// Images [`FaceEngine::analyze_many_bytes`] embeds in one inference (1 where the
    /// runtime or the recognizer takes no batches).
    pub fn batch_size(&self) -> usize {
        self.recognizer.batch_size()
    }

    /// [`FaceEngine::analyze_bytes`] for several images, their faces embedded together
    /// ([`Recognizer::embed_many`]). One result per image, in order; the outer error is an
    /// inference failure, which no image caused alone.
    pub fn analyze_many_bytes(
        &self,
        images: &[&[u8]],
    ) -> Result<Vec<Result<AnalyzedFace, FaceError>>, FaceError> {
        let picked = images
            .iter()
            .map(|bytes| {
                let image = self.decode(bytes)?;
                let faces = self.detect(&image)?;
                Ok(((), self.measure(&image, self.select(&image, &faces)?)))
            })
            .collect();
        Ok(self.embed_picked(picked)?.into_iter().map(|result| result.map(|((), face)| face)).collect())
    }

    /// Embeds the face picked from each image together ([`FaceEngine::embed_measured`]),
    /// leaving each image's refusal in its place; `T` is what the caller keeps of each image.
    /// The outer error is an inference failure, which no image caused alone.
    pub fn embed_picked<T>(
        &self,
        picked: PerImage<T, MeasuredFace>,
    ) -> Result<PerImage<T, AnalyzedFace>, FaceError> {
        let mut kept = Vec::with_capacity(picked.len());
        let mut measured = Vec::with_capacity(picked.len());
        let refusals: Vec<Option<FaceError>> = picked
            .into_iter()
            .map(|result| {
                let (keep, face) = result?;
                kept.push(keep);
                measured.push(face);
                Ok(())
            })
            .map(Result::err)
            .collect();
        let mut analyzed = kept.into_iter().zip(self.embed_measured(measured)?);
        Ok(refusals
            .into_iter()
            .map(|refusal| match refusal {
                Some(refusal) => Err(refusal),
                None => Ok(analyzed.next().expect("one analysed face per picked one")),
            })
            .collect())
    }
}

/// The flip-TTA embedding: the normalised sum of the face's and its mirror image's.
fn sum_of(embedding: &Embedding, mirrored: &Embedding) -> Result<Embedding, FaceError> {
    let sum = embedding.as_slice().iter().zip(mirrored.as_slice()).map(|(a, b)| a + b).collect();
    Embedding::parse(sum).map_err(|reason| FaceError::Inference { model: "flip-tta".into(), reason })
}

pub fn select_face(
    faces: &[DetectedFace],
    (width, height): (u32, u32),
    selection: FaceSelection,
) -> Result<&DetectedFace, FaceError> {
    let centre = crate::Point::new(width as f32 / 2.0, height as f32 / 2.0);
    match (faces, selection) {
        ([], _) => Err(FaceError::NoFace),
        ([only], _) => Ok(only),
        (_, FaceSelection::Single) => Err(FaceError::MultipleFaces { count: faces.len() }),
        (_, FaceSelection::Central) => Ok(faces
            .iter()
            .min_by(|a, b| a.bbox.center().distance(centre).total_cmp(&b.bbox.center().distance(centre)))
            .expect("non-empty")),
        (_, FaceSelection::Largest) => {
            Ok(faces.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area())).expect("non-empty"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoundingBox, Point};

    fn face_at(x: f32, size: f32) -> DetectedFace {
        DetectedFace {
            bbox: BoundingBox { x, y: 0.0, width: size, height: size },
            landmarks: [Point::new(0.0, 0.0); 5],
            score: 0.9,
        }
    }

    #[test]
    fn selection_rules_pick_the_expected_face() {
        let faces = [face_at(0.0, 80.0), face_at(90.0, 20.0)];
        let dims = (200, 20);
        assert!(matches!(select_face(&[], dims, FaceSelection::Central), Err(FaceError::NoFace)));
        assert!(matches!(
            select_face(&faces, dims, FaceSelection::Single),
            Err(FaceError::MultipleFaces { count: 2 })
        ));
        assert_eq!(select_face(&faces, dims, FaceSelection::Central).unwrap().bbox.x, 90.0);
        assert_eq!(select_face(&faces, dims, FaceSelection::Largest).unwrap().bbox.x, 0.0);
        assert_eq!(select_face(&faces[..1], dims, FaceSelection::Single).unwrap().bbox.x, 0.0);
    }
}
