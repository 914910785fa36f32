//! The work done on inference threads: image bytes in, analysed faces out. Nothing here
//! touches storage or the network.

use std::time::Instant;

use image::RgbImage;
use visage_face::liveness::AttackType;
use visage_face::{
    AnalyzedFace, BoundingBox, DetectedFace, FaceEngine, FaceError, LivenessModel, LivenessScore,
    MeasuredFace, Numerics, Point, QualityIssue, select_face,
};

/// Quality problems that make a liveness score meaningless: the models need a sharp,
/// well-exposed face of some size to see print texture or screen moiré.
const LIVENESS_BLOCKERS: [QualityIssue; 5] = [
    QualityIssue::FaceTooSmall,
    QualityIssue::TooBlurry,
    QualityIssue::TooDark,
    QualityIssue::TooBright,
    QualityIssue::PoorExposure,
];

pub struct Pipeline {
    pub engine: FaceEngine,
    pub liveness: LivenessModel,
    pub liveness_threshold: f32,
    /// The backend that runs (after any fallback) and its precision, as `visage_build_info`
    /// reports them and as the thresholds must have been calibrated with.
    pub numerics: Numerics,
}

#[derive(Debug, Clone)]
pub enum LivenessVerdict {
    Live { score: f32 },
    Spoof { score: f32, attack_type: AttackType },
    Inconclusive { reasons: Vec<QualityIssue> },
}

impl LivenessVerdict {
    /// The liveness score, when the models judged the face.
    pub fn score(&self) -> Option<f32> {
        match self {
            Self::Live { score } | Self::Spoof { score, .. } => Some(*score),
            Self::Inconclusive { .. } => None,
        }
    }

    /// The value of the `liveness_checks_total{result}` label.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Live { .. } => "pass",
            Self::Spoof { .. } => "fail",
            Self::Inconclusive { .. } => "inconclusive",
        }
    }
}

/// Which face of the image a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The configured selection rule (`models.face_selection`).
    Configured,
    /// Exactly one face that passes the quality gate; faces failing it are bystanders
    /// (enrolment: a template must come from one clear face).
    OnlyGoodFace,
}

/// Seconds spent in each stage of one request, for `verification_duration_seconds{stage}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub decode: f64,
    pub detect: f64,
    /// Alignment, quality measures and the recognizer.
    pub embed: f64,
    pub liveness: Option<f64>,
}

/// Runs one stage inside its span (exported as a child of the request when tracing) and adds
/// its time to `slot`.
fn timed<T>(slot: &mut f64, stage: tracing::Span, work: impl FnOnce() -> T) -> T {
    let _entered = stage.enter();
    let started = Instant::now();
    let result = work();
    *slot += started.elapsed().as_secs_f64();
    result
}

pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub face: AnalyzedFace,
    pub liveness: Option<LivenessVerdict>,
    pub times: StageTimes,
}

pub struct Detection {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<(AnalyzedFace, Option<LivenessVerdict>)>,
}

impl Pipeline {
    /// Decode → detect → pick one face → align, measure, embed → optionally liveness.
    pub fn probe(&self, bytes: &[u8], pick: Pick, with_liveness: bool) -> Result<Probe, FaceError> {
        self.probe_many(&[bytes], pick, with_liveness)?.pop().expect("one result per image")
    }

    /// [`Pipeline::probe`] for several images: each is decoded, searched and its face picked
    /// in turn, then the picked faces are embedded together ([`FaceEngine::embed_picked`]:
    /// a batched inference is cheaper per face than one per face). One result per image, in
    /// order; the outer error is an inference failure, which no image caused alone.
    pub fn probe_many(
        &self,
        images: &[&[u8]],
        pick: Pick,
        with_liveness: bool,
    ) -> Result<Vec<Result<Probe, FaceError>>, FaceError> {
        let picked = images.iter().map(|bytes| self.pick(bytes, pick)).collect();
        let mut seconds = 0.0;
        let analyzed =
            timed(&mut seconds, tracing::info_span!("embed"), || self.engine.embed_picked(picked))?;
        // Each face's share of the batch.
        let share = seconds / analyzed.iter().flatten().count().max(1) as f64;
        Ok(analyzed
            .into_iter()
            .map(|result| {
                let ((image, mut times), face) = result?;
                times.embed += share;
                let liveness = match with_liveness {
                    false => None,
                    true => {
                        let mut seconds = 0.0;
                        let verdict = timed(&mut seconds, tracing::info_span!("liveness"), || {
                            self.judge(&image, &face)
                        })?;
                        times.liveness = Some(seconds);
                        Some(verdict)
                    }
                };
                Ok(Probe { width: image.width(), height: image.height(), face, liveness, times })
            })
            .collect())
    }

    /// Decode → detect → the face `pick` names, aligned and measured, with the image and the
    /// stages' times so far.
    fn pick(&self, bytes: &[u8], pick: Pick) -> Result<((RgbImage, StageTimes), MeasuredFace), FaceError> {
        let mut times = StageTimes::default();
        let image = timed(&mut times.decode, tracing::info_span!("decode"), || self.engine.decode(bytes))?;
        let faces = timed(&mut times.detect, tracing::info_span!("detect"), || self.engine.detect(&image))?;
        let face = timed(&mut times.embed, tracing::info_span!("align"), || match pick {
            Pick::Configured => {
                let face = select_face(&faces, image.dimensions(), self.engine.config().selection)?;
                Ok(self.engine.measure(&image, face))
            }
            Pick::OnlyGoodFace => {
                let mut measured: Vec<MeasuredFace> =
                    faces.iter().map(|face| self.engine.measure(&image, face)).collect();
                match measured.iter().filter(|face| face.quality.passed()).count() {
                    // No face good enough: the best detection carries the reasons.
                    0 if measured.is_empty() => Err(FaceError::NoFace),
                    0 => Ok(measured.swap_remove(0)),
                    1 => Ok(measured.into_iter().find(|face| face.quality.passed()).expect("one passed")),
                    count => Err(FaceError::MultipleFaces { count }),
                }
            }
        })?;
        Ok(((image, times), face))
    }

    /// Every face of the image, analysed.
    pub fn detect_all(&self, bytes: &[u8], with_liveness: bool) -> Result<Detection, FaceError> {
        let image = tracing::info_span!("decode").in_scope(|| self.engine.decode(bytes))?;
        let faces = tracing::info_span!("detect").in_scope(|| self.engine.detect(&image))?;
        let faces = faces
            .iter()
            .map(|face| {
                let analyzed =
                    tracing::info_span!("analyze").in_scope(|| self.engine.analyze(&image, face))?;
                let liveness = with_liveness
                    .then(|| tracing::info_span!("liveness").in_scope(|| self.judge(&image, &analyzed)))
                    .transpose()?;
                Ok((analyzed, liveness))
            })
            .collect::<Result<_, FaceError>>()?;
        Ok(Detection { width: image.width(), height: image.height(), faces })
    }

    fn judge(&self, image: &RgbImage, face: &AnalyzedFace) -> Result<LivenessVerdict, FaceError> {
        let reasons: Vec<QualityIssue> =
            face.quality.issues.iter().copied().filter(|issue| LIVENESS_BLOCKERS.contains(issue)).collect();
        if !reasons.is_empty() {
            return Ok(LivenessVerdict::Inconclusive { reasons });
        }
        let score: LivenessScore = self.liveness.score(image, &face.detection)?;
        Ok(match score.attack_type(self.liveness_threshold) {
            None => LivenessVerdict::Live { score: score.live },
            Some(attack_type) => LivenessVerdict::Spoof { score: score.live, attack_type },
        })
    }

    /// Runs every model once so the first request does not pay for plan building.
    pub fn warm_up(&self) -> Result<(), FaceError> {
        let image = RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        self.engine.detect(&image)?;
        let face = DetectedFace {
            bbox: BoundingBox { x: 110.0, y: 70.0, width: 100.0, height: 110.0 },
            landmarks: [
                Point::new(140.0, 110.0),
                Point::new(180.0, 110.0),
                Point::new(160.0, 130.0),
                Point::new(145.0, 155.0),
                Point::new(175.0, 155.0),
            ],
            score: 1.0,
        };
        self.engine.analyze(&image, &face)?;
        self.liveness.score(&image, &face)?;
        Ok(())
    }
}
