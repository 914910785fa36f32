//! Decision thresholds and the false-accept rates they stand for. Read from
//! `<models>/calibration.json` when present (written by a calibration run on the development
//! split), else the operating points measured for each recognizer and documented in docs/accuracy.md.
//! `visage calibrate` writes the file, `visage serve` and the evaluations read it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use visage_face::{LivenessKind, RecognizerKind};

pub const FILE_NAME: &str = "calibration.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OperatingPoint {
    /// Target false-accept rate.
    pub far: f64,
    /// Cosine similarity at or above which two faces match.
    pub threshold: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecognizerCalibration {
    /// Where the thresholds were measured.
    pub dataset: String,
    pub points: Vec<OperatingPoint>,
    /// Error rates of the calibration or evaluation run at the default target, for the
    /// `source="calibration"` gauges.
    #[serde(default)]
    pub evaluation: Option<EvaluationSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvaluationSummary {
    pub far_percent: f64,
    pub frr_percent: f64,
    pub eer_percent: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LivenessCalibration {
    /// The liveness model the threshold belongs to (files before this field: MiniFASNet).
    #[serde(default = "files_without_a_model_calibrated_minifasnet")]
    pub model: LivenessKind,
    pub dataset: String,
    pub apcer_target: f64,
    pub threshold: f32,
}

fn files_without_a_model_calibrated_minifasnet() -> LivenessKind {
    LivenessKind::Minifasnet
}

/// The file's format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub version: u32,
    pub recognizers: std::collections::BTreeMap<String, RecognizerCalibration>,
    pub liveness: Option<LivenessCalibration>,
}

/// A calibration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not a calibration file: {source}", path.display())]
    Format { path: PathBuf, source: serde_json::Error },
    #[error("{} has format version {found}, this visage reads {FORMAT_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

#[derive(Debug, Clone)]
pub struct Calibration {
    pub source: String,
    pub points: Vec<OperatingPoint>,
    pub liveness_threshold: f32,
    /// Where the liveness threshold comes from.
    pub liveness_source: String,
    pub evaluation: Option<EvaluationSummary>,
}

impl Calibration {
    pub fn load(
        models_dir: &Path,
        recognizer: RecognizerKind,
        liveness: LivenessKind,
    ) -> Result<Self, CalibrationError> {
        let path = models_dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(Self::built_in(recognizer, liveness));
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => return Err(CalibrationError::Read { path, source }),
        };
        let file: CalibrationFile = match serde_json::from_str(&text) {
            Ok(file) => file,
            Err(source) => return Err(CalibrationError::Format { path, source }),
        };
        if file.version != FORMAT_VERSION {
            return Err(CalibrationError::Version { path, found: file.version });
        }
        let built_in = Self::built_in(recognizer, liveness);
        // A threshold calibrated for another liveness model means nothing for this one.
        let liveness_calibration = file.liveness.filter(|l| l.model == liveness);
        let recognizer_points = file.recognizers.get(&recognizer_name(recognizer));
        Ok(Self {
            source: match recognizer_points {
                Some(c) => format!("{} ({})", path.display(), c.dataset),
                None => built_in.source.clone(),
            },
            points: recognizer_points.map_or(built_in.points, |c| c.points.clone()),
            evaluation: recognizer_points.and_then(|c| c.evaluation),
            liveness_source: liveness_calibration
                .as_ref()
                .map_or(built_in.liveness_source, |l| format!("{} ({})", path.display(), l.dataset)),
            liveness_threshold: liveness_calibration.map_or(built_in.liveness_threshold, |l| l.threshold),
        })
    }

    /// The thresholds at FAR <= 0.1% measured on LFW pairsDevTrain (with 300,000 sampled
    /// impostor pairs) by `visage calibrate`; see docs/accuracy.md.
    pub fn built_in(recognizer: RecognizerKind, liveness: LivenessKind) -> Self {
        Self {
            source: "built-in (LFW pairsDevTrain)".into(),
            points: vec![OperatingPoint { far: 1e-3, threshold: recognizer.default_threshold() }],
            liveness_threshold: liveness.default_threshold(),
            liveness_source: format!(
                "built-in for {} (NUAA development subjects 0001-0004, APCER <= 1%)",
                liveness.name()
            ),
            evaluation: None,
        }
    }

    /// The operating point for a FAR target, when one was calibrated (relative match, so
    /// `0.001` finds `1e-3`).
    pub fn point(&self, far: f64) -> Option<OperatingPoint> {
        self.points.iter().copied().find(|p| ((p.far - far) / far).abs() < 1e-6)
    }

    pub fn targets(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.far).collect()
    }
}

/// The key of a recognizer's entry in the file: its serde name, as in the configuration.
fn recognizer_name(recognizer: RecognizerKind) -> String {
    let name = serde_json::to_value(recognizer).ok();
    name.as_ref().and_then(serde_json::Value::as_str).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibration_file_overrides_the_built_in_points() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Calibration::load(dir.path(), RecognizerKind::Sface, LivenessKind::Minifasnet)
                .unwrap()
                .points
                .len(),
            1
        );
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"version":1,"recognizers":{"sface":{"dataset":"dev","points":[{"far":0.01,"threshold":0.3},{"far":0.0001,"threshold":0.42}]}},
               "liveness":{"dataset":"nuaa","apcer_target":0.01,"threshold":0.2}}"#,
        )
        .unwrap();
        let c = Calibration::load(dir.path(), RecognizerKind::Sface, LivenessKind::Minifasnet).unwrap();
        assert_eq!(c.point(1e-4).unwrap().threshold, 0.42);
        assert!(c.point(1e-3).is_none());
        assert_eq!(c.liveness_threshold, 0.2, "a file without a model field calibrated MiniFASNet");
        let faceplugin =
            Calibration::load(dir.path(), RecognizerKind::Sface, LivenessKind::Faceplugin).unwrap();
        assert_eq!(faceplugin.liveness_threshold, LivenessKind::Faceplugin.default_threshold());
        let other =
            Calibration::load(dir.path(), RecognizerKind::Mobilefacenet, LivenessKind::Minifasnet).unwrap();
        assert_eq!(other.point(1e-3).unwrap().threshold, RecognizerKind::Mobilefacenet.default_threshold());
        std::fs::write(dir.path().join(FILE_NAME), r#"{"version":9,"recognizers":{}}"#).unwrap();
        assert!(matches!(
            Calibration::load(dir.path(), RecognizerKind::Sface, LivenessKind::Minifasnet),
            Err(CalibrationError::Version { found: 9, .. })
        ));
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let err = Calibration::load(dir.path(), RecognizerKind::Sface, LivenessKind::Minifasnet).unwrap_err();
        assert!(err.to_string().contains("is not a calibration file"), "{err}");
    }
}
