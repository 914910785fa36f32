//! Decision thresholds and the false-accept rates they stand for. Read from
//! `<models>/calibration.json` when present (written by a calibration run on the development
//! split), else the operating points measured for each recognizer and documented in docs/accuracy.md.
//! `visage calibrate` writes the file, `visage serve` and the evaluations read it.
//!
//! Thresholds are kept per recognizer *and* per [`Numerics`] (backend and precision): bf16
//! moves the scores enough to move a threshold, so a threshold measured in f32 is never served
//! to a bf16 service. The f32 runtimes agree to the tolerances the pipeline tests check, so an
//! f32 calibration serves every f32 runtime, and says which one it was measured on.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use visage_face::{BackendKind, LivenessKind, Numerics, Precision, RecognizerKind};

pub const FILE_NAME: &str = "calibration.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OperatingPoint {
    /// Target false-accept rate.
    pub far: f64,
    /// Cosine similarity at or above which two faces match.
    pub threshold: f32,
    /// What the threshold rests on (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<FarEvidence>,
}

impl OperatingPoint {
    pub fn new(far: f64, threshold: f32) -> Self {
        Self { far, threshold, evidence: None }
    }
}

/// How a threshold was chosen for its FAR target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The lowest threshold whose FAR's 95% Wilson interval lies under the target: the data
    /// shows the FAR to be under it.
    Conservative,
    /// The lowest threshold whose measured FAR is at most the target: the estimate touches it.
    Point,
}

/// The measurement behind a threshold: how it was chosen and the FAR it gave on the
/// calibration data, with its 95% Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct FarEvidence {
    pub rule: ThresholdRule,
    pub false_accepts: u64,
    pub impostor_pairs: u64,
    /// false_accepts / impostor_pairs.
    pub far_estimate: f64,
    pub far_low_95: f64,
    pub far_high_95: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecognizerCalibration {
    /// Where the thresholds were measured.
    pub dataset: String,
    /// The runtime that computed the scores (files before this field: ONNX Runtime).
    #[serde(default = "files_without_numerics_were_onnxruntime")]
    pub backend: BackendKind,
    /// The precision it ran (files before this field: f32).
    #[serde(default = "files_without_numerics_were_f32")]
    pub precision: Precision,
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

fn files_without_numerics_were_onnxruntime() -> BackendKind {
    Numerics::REFERENCE.backend
}

fn files_without_numerics_were_f32() -> Precision {
    Numerics::REFERENCE.precision
}

impl RecognizerCalibration {
    pub fn numerics(&self) -> Numerics {
        Numerics { backend: self.backend, precision: self.precision }
    }
}

/// Where a recognizer's thresholds for one backend and precision are kept in the file:
/// `sface/openvino/bf16`. Files written before per-backend thresholds have the recognizer's
/// name alone (ONNX Runtime, f32); they are still read.
pub fn entry_key(recognizer: RecognizerKind, numerics: Numerics) -> String {
    format!("{}/{}/{}", recognizer_name(recognizer), numerics.backend.as_str(), numerics.precision.as_str())
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
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone)]
pub struct Calibration {
    pub source: String,
    /// The backend and precision the thresholds were measured with.
    pub measured_on: Numerics,
    pub points: Vec<OperatingPoint>,
    pub liveness_threshold: f32,
    /// Where the liveness threshold comes from.
    pub liveness_source: String,
    pub evaluation: Option<EvaluationSummary>,
}

impl Calibration {
    /// The thresholds for `recognizer` scored by `numerics` (the backend and precision that
    /// run, never `Auto`).
    pub fn load(
        models_dir: &Path,
        recognizer: RecognizerKind,
        numerics: Numerics,
        liveness: LivenessKind,
    ) -> Result<Self, CalibrationError> {
        let path = models_dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(Self::built_in(recognizer, numerics, liveness));
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path, recognizer, numerics, liveness),
            Err(source) => Err(CalibrationError::Read { path, source }),
        }
    }

    /// A calibration file's `text` (read from `path`, which messages name), checked: every
    /// FAR target and APCER target a rate in (0, 1), every threshold a finite similarity in
    /// [-1, 1] (liveness: [0, 1]), every reported rate a percentage, every key naming the
    /// backend and precision its entry says. A hand-edited file that breaks one is refused,
    /// never served. Without an entry for this recognizer in this precision, the built-in
    /// thresholds for the precision serve.
    pub fn parse(
        text: &str,
        path: &Path,
        recognizer: RecognizerKind,
        numerics: Numerics,
        liveness: LivenessKind,
    ) -> Result<Self, CalibrationError> {
        let file = CalibrationFile::read(text, path)?;
        let built_in = Self::built_in(recognizer, numerics, liveness);
        // A threshold calibrated for another liveness model means nothing for this one.
        let liveness_calibration = file.liveness.as_ref().filter(|l| l.model == liveness);
        let recognizer_points = file.entry(recognizer, numerics);
        Ok(Self {
            source: match recognizer_points {
                Some(c) => format!("{} ({}; {})", path.display(), c.dataset, c.numerics().label()),
                None => built_in.source.clone(),
            },
            measured_on: recognizer_points.map_or(built_in.measured_on, RecognizerCalibration::numerics),
            points: recognizer_points.map_or(built_in.points, |c| c.points.clone()),
            evaluation: match recognizer_points {
                Some(c) => c.evaluation,
                None => built_in.evaluation,
            },
            liveness_source: liveness_calibration
                .as_ref()
                .map_or(built_in.liveness_source, |l| format!("{} ({})", path.display(), l.dataset)),
            liveness_threshold: liveness_calibration.map_or(built_in.liveness_threshold, |l| l.threshold),
        })
    }

    /// The conservative thresholds for FAR 0.1% measured on LFW pairsDevTrain (with 300,000
    /// sampled impostor pairs) by `visage calibrate` (docs/accuracy.md), in the precision that
    /// runs, with that run's evidence and error rates, so that a service without a calibration
    /// file still states what its threshold stands for and exports the `source="calibration"`
    /// gauges.
    pub fn built_in(recognizer: RecognizerKind, numerics: Numerics, liveness: LivenessKind) -> Self {
        let run = built_in_run(recognizer, numerics.precision);
        Self {
            source: match numerics.precision {
                Precision::Bf16 => BUILT_IN_BF16_SOURCE.into(),
                _ => BUILT_IN_SOURCE.into(),
            },
            measured_on: run.measured_on,
            points: vec![OperatingPoint {
                far: 1e-3,
                threshold: recognizer.default_threshold(),
                evidence: Some(run.evidence),
            }],
            liveness_threshold: liveness.default_threshold(),
            liveness_source: format!(
                "built-in for {} (NUAA development subjects 0001-0004, APCER <= 1%)",
                liveness.name()
            ),
            evaluation: Some(run.evaluation),
        }
    }

    /// The operating point for a FAR target, when one was calibrated (relative match, so
    /// `0.001` finds `1e-3`).
    pub fn point(&self, far: f64) -> Option<OperatingPoint> {
        find_point(&self.points, far)
    }

    pub fn targets(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.far).collect()
    }
}

/// The points measured for some FAR targets, and the targets the data could not resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub points: Vec<OperatingPoint>,
    pub unresolved: Vec<f64>,
}

/// The threshold for each FAR target chosen by `rule` on `scores`, with its evidence. A target
/// the data cannot resolve by that rule gets no point: with the conservative rule, fewer than
/// [`impostors_needed`] impostor scores; with the point rule, fewer than 1 / target.
pub fn measure(scores: &visage_stats::ScoreSet, targets: &[f64], rule: ThresholdRule) -> Measured {
    let mut measured = Measured { points: Vec::new(), unresolved: Vec::new() };
    for &far in targets {
        let point = match rule {
            ThresholdRule::Conservative => scores.conservative_threshold_for_far(far),
            ThresholdRule::Point => {
                (scores.far_resolution() <= far).then(|| scores.far_point(scores.threshold_for_far(far)))
            }
        };
        match point {
            Some(m) => measured.points.push(OperatingPoint {
                far,
                threshold: m.threshold as f32,
                evidence: Some(FarEvidence {
                    rule,
                    false_accepts: m.false_accepts as u64,
                    impostor_pairs: m.impostors as u64,
                    far_estimate: m.far,
                    far_low_95: m.interval.low,
                    far_high_95: m.interval.high,
                }),
            }),
            None => measured.unresolved.push(far),
        }
    }
    measured
}

/// The fewest impostor comparisons that can show a FAR under `target` by the conservative
/// rule: even with no false accept, the upper end of the 95% Wilson interval, z² / (n + z²),
/// must come down to the target (about 3.84 / target).
pub fn impostors_needed(target: f64) -> u64 {
    let above = |n: u64| visage_stats::wilson_interval(0, n as usize, visage_stats::Z_95).high > target;
    let z2 = visage_stats::Z_95 * visage_stats::Z_95;
    let mut n = (z2 * (1.0 - target) / target).floor().max(1.0) as u64;
    while above(n) {
        n += 1;
    }
    while n > 1 && !above(n - 1) {
        n -= 1;
    }
    n
}

/// Thresholds one collection earned from its own labelled decisions (`visage calibrate
/// --from-feedback`): a calibration file kept in the database under a name decisions cite.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionCalibration {
    /// `feedback:<collection>:<date>`.
    pub name: String,
    pub points: Vec<OperatingPoint>,
    pub evaluation: Option<EvaluationSummary>,
}

impl CollectionCalibration {
    /// The name decisions made with a collection's own thresholds cite.
    pub fn name_for(collection: &str, date: &str) -> String {
        format!("feedback:{collection}:{date}")
    }

    /// The points for `recognizer` scored by `numerics` in a calibration file's `document`,
    /// checked as a file is.
    pub fn parse(
        name: &str,
        document: &str,
        recognizer: RecognizerKind,
        numerics: Numerics,
    ) -> Result<Self, String> {
        let file = CalibrationFile::read(document, Path::new(name)).map_err(|e| e.to_string())?;
        let entry = file.entry(recognizer, numerics).ok_or_else(|| {
            format!("no thresholds for {} in {}", recognizer_name(recognizer), numerics.label())
        })?;
        Ok(Self { name: name.to_owned(), points: entry.points.clone(), evaluation: entry.evaluation })
    }

    pub fn point(&self, far: f64) -> Option<OperatingPoint> {
        find_point(&self.points, far)
    }
}

/// The point for a FAR target (relative match, so `0.001` finds `1e-3`).
fn find_point(points: &[OperatingPoint], far: f64) -> Option<OperatingPoint> {
    points.iter().copied().find(|p| ((p.far - far) / far).abs() < 1e-6)
}

impl CalibrationFile {
    /// The entry for `recognizer` scored by `numerics`: the one measured with exactly these,
    /// else one measured in the same precision on another runtime (f32 runtimes agree).
    pub fn entry(&self, recognizer: RecognizerKind, numerics: Numerics) -> Option<&RecognizerCalibration> {
        let name = recognizer_name(recognizer);
        let of_recognizer: Vec<&RecognizerCalibration> = self
            .recognizers
            .iter()
            .filter(|(key, _)| key.split('/').next() == Some(name.as_str()))
            .map(|(_, entry)| entry)
            .collect();
        let exact = of_recognizer.iter().find(|e| e.numerics() == numerics);
        exact.or_else(|| of_recognizer.iter().find(|e| e.precision == numerics.precision)).copied()
    }

    /// Puts `entry` under its key, replacing what was measured with the same recognizer,
    /// backend and precision (also under the name-only key of older files).
    pub fn insert(&mut self, recognizer: RecognizerKind, entry: RecognizerCalibration) {
        if entry.numerics() == Numerics::REFERENCE {
            self.recognizers.remove(&recognizer_name(recognizer));
        }
        self.recognizers.insert(entry_key(recognizer, entry.numerics()), entry);
    }

    /// A calibration file's `text` (from `path`, which messages name): its format, its version
    /// and its values checked.
    fn read(text: &str, path: &Path) -> Result<Self, CalibrationError> {
        let path = path.to_path_buf();
        let file: Self = match serde_json::from_str(text) {
            Ok(file) => file,
            Err(source) => return Err(CalibrationError::Format { path, source }),
        };
        if file.version != FORMAT_VERSION {
            return Err(CalibrationError::Version { path, found: file.version });
        }
        match file.check() {
            Ok(()) => Ok(file),
            Err(reason) => Err(CalibrationError::Invalid { path, reason }),
        }
    }

    fn check(&self) -> Result<(), String> {
        let rate = |x: f64| x > 0.0 && x < 1.0;
        let percent = |x: f64| (0.0..=100.0).contains(&x);
        for (name, calibration) in &self.recognizers {
            let numerics = calibration.numerics();
            if numerics.precision == Precision::Auto {
                return Err(format!("{name}: precision must be the one that ran (f32 or bf16), not auto"));
            }
            let recognizer = name.split('/').next().unwrap_or_default();
            let expected =
                format!("{recognizer}/{}/{}", numerics.backend.as_str(), numerics.precision.as_str());
            if name.contains('/') && *name != expected {
                return Err(format!("{name}: the entry says it was measured on {}", numerics.label()));
            }
            if !name.contains('/') && numerics != Numerics::REFERENCE {
                return Err(format!("{name}: an entry measured on {} is keyed {expected}", numerics.label()));
            }
            for point in &calibration.points {
                if !rate(point.far) {
                    return Err(format!("{name}: FAR target {} is not a rate in (0, 1)", point.far));
                }
                if !(-1.0..=1.0).contains(&point.threshold) {
                    return Err(format!(
                        "{name}: threshold {} is not a similarity in [-1, 1]",
                        point.threshold
                    ));
                }
            }
            if let Some(e) = calibration.evaluation
                && !(percent(e.far_percent) && percent(e.frr_percent) && percent(e.eer_percent))
            {
                return Err(format!("{name}: the evaluation's rates are not percentages"));
            }
        }
        if let Some(l) = &self.liveness
            && !(rate(l.apcer_target) && (0.0..=1.0).contains(&l.threshold))
        {
            return Err("liveness: the APCER target must be in (0, 1) and the threshold in [0, 1]".into());
        }
        Ok(())
    }
}

/// What a service without a calibration file calls its calibration (f32 runtimes).
pub const BUILT_IN_SOURCE: &str = "built-in (LFW pairsDevTrain, conservative)";
/// The same, for a runtime computing in bf16.
pub const BUILT_IN_BF16_SOURCE: &str = "built-in (LFW pairsDevTrain, conservative, openvino bf16)";

/// The calibration run behind a built-in threshold.
struct BuiltInRun {
    measured_on: Numerics,
    evidence: FarEvidence,
    evaluation: EvaluationSummary,
}

/// `visage [--recognizer R] [--backend openvino --precision bf16] calibrate --pairs
/// ../shared/data/lfw-dev/pairsDevTrain.txt --impostor-pairs 300000` at FAR 1e-3 (301,100
/// impostor pairs, 1,100 genuine); the built-in threshold is its threshold rounded up to three
/// decimals, which can only lower the false accepts counted here.
fn built_in_run(recognizer: RecognizerKind, precision: Precision) -> BuiltInRun {
    let measured_on = match precision {
        Precision::Bf16 => Numerics { backend: BackendKind::OpenVino, precision: Precision::Bf16 },
        _ => Numerics::REFERENCE,
    };
    let run = |false_accepts: u64, low: f64, high: f64, frr_percent: f64, eer_percent: f64| BuiltInRun {
        measured_on,
        evidence: FarEvidence {
            rule: ThresholdRule::Conservative,
            false_accepts,
            impostor_pairs: 301_100,
            far_estimate: false_accepts as f64 / 301_100.0,
            far_low_95: low,
            far_high_95: high,
        },
        evaluation: EvaluationSummary {
            far_percent: false_accepts as f64 / 301_100.0 * 100.0,
            frr_percent,
            eer_percent,
        },
    };
    // With the same number of impostor pairs the conservative rule allows the same number of
    // false accepts (267) whatever the recognizer; the thresholds differ.
    match (recognizer, measured_on.precision) {
        (RecognizerKind::Sface, Precision::Bf16) => run(267, 0.000_786_6, 0.000_999_6, 1.636_364, 0.818_182),
        (RecognizerKind::Mobilefacenet, Precision::Bf16) => {
            run(267, 0.000_786_6, 0.000_999_6, 2.0, 0.818_182)
        }
        (RecognizerKind::Sface, _) => run(267, 0.000_786_6, 0.000_999_6, 1.363_636, 0.727_273),
        (RecognizerKind::Mobilefacenet, _) => run(267, 0.000_786_6, 0.000_999_6, 2.0, 0.727_273),
    }
}

/// The key of a recognizer's entry in the file: its serde name, as in the configuration.
pub fn recognizer_name(recognizer: RecognizerKind) -> String {
    let name = serde_json::to_value(recognizer).ok();
    name.as_ref().and_then(serde_json::Value::as_str).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENVINO_BF16: Numerics = Numerics { backend: BackendKind::OpenVino, precision: Precision::Bf16 };
    const OPENVINO_F32: Numerics = Numerics { backend: BackendKind::OpenVino, precision: Precision::F32 };

    fn entry(backend: BackendKind, precision: Precision, threshold: f32) -> RecognizerCalibration {
        RecognizerCalibration {
            dataset: format!("{} {}", backend.as_str(), precision.as_str()),
            backend,
            precision,
            points: vec![OperatingPoint::new(1e-3, threshold)],
            evaluation: None,
        }
    }

    #[test]
    fn thresholds_serve_only_the_precision_they_were_measured_in() {
        let mut file =
            CalibrationFile { version: FORMAT_VERSION, recognizers: Default::default(), liveness: None };
        file.insert(RecognizerKind::Sface, entry(BackendKind::OnnxRuntime, Precision::F32, 0.36));
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains("\"sface/onnxruntime/f32\""), "{text}");
        let load = |text: &str, numerics| {
            Calibration::parse(
                text,
                Path::new("c.json"),
                RecognizerKind::Sface,
                numerics,
                LivenessKind::Ensemble,
            )
            .unwrap()
        };
        // Another f32 runtime shares it, and says where it was measured.
        let on_openvino = load(&text, OPENVINO_F32);
        assert_eq!(on_openvino.point(1e-3).unwrap().threshold, 0.36);
        assert_eq!(on_openvino.measured_on, Numerics::REFERENCE);
        assert!(on_openvino.source.contains("onnxruntime f32"), "{}", on_openvino.source);
        // bf16 does not: its built-in thresholds serve until it has its own.
        let bf16 = load(&text, OPENVINO_BF16);
        assert_eq!(bf16.source, BUILT_IN_BF16_SOURCE);
        assert_eq!(bf16.point(1e-3).unwrap().threshold, RecognizerKind::Sface.default_threshold());
        file.insert(RecognizerKind::Sface, entry(BackendKind::OpenVino, Precision::Bf16, 0.37));
        file.insert(RecognizerKind::Sface, entry(BackendKind::OpenVino, Precision::F32, 0.35));
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(load(&text, OPENVINO_BF16).point(1e-3).unwrap().threshold, 0.37);
        assert_eq!(
            load(&text, OPENVINO_F32).point(1e-3).unwrap().threshold,
            0.35,
            "its own beats a shared one"
        );
        assert_eq!(load(&text, Numerics::REFERENCE).point(1e-3).unwrap().threshold, 0.36);
        let tract = Numerics { backend: BackendKind::Tract, precision: Precision::F32 };
        assert_eq!(load(&text, tract).measured_on.precision, Precision::F32);
    }

    #[test]
    fn a_file_of_older_visage_versions_is_onnxruntime_f32_and_a_new_entry_replaces_it() {
        let old = r#"{"version":1,"recognizers":{"sface":{"dataset":"dev","points":[{"far":0.001,"threshold":0.33}]}},"liveness":null}"#;
        let c = Calibration::parse(
            old,
            Path::new("c.json"),
            RecognizerKind::Sface,
            Numerics::REFERENCE,
            LivenessKind::Ensemble,
        )
        .unwrap();
        assert_eq!((c.point(1e-3).unwrap().threshold, c.measured_on), (0.33, Numerics::REFERENCE));
        let mut file: CalibrationFile = serde_json::from_str(old).unwrap();
        file.insert(RecognizerKind::Sface, entry(BackendKind::OnnxRuntime, Precision::F32, 0.36));
        assert_eq!(file.recognizers.keys().collect::<Vec<_>>(), ["sface/onnxruntime/f32"]);
    }

    #[test]
    fn an_entry_whose_key_and_fields_disagree_is_refused() {
        let parse = |text: &str| {
            Calibration::parse(
                text,
                Path::new("c.json"),
                RecognizerKind::Sface,
                OPENVINO_BF16,
                LivenessKind::Ensemble,
            )
        };
        for (key, fields) in [
            ("sface/openvino/bf16", r#""backend":"openvino","precision":"f32""#),
            ("sface/onnxruntime/f32", r#""backend":"openvino","precision":"bf16""#),
            ("sface", r#""backend":"openvino","precision":"bf16""#),
            ("sface/openvino/auto", r#""backend":"openvino","precision":"auto""#),
        ] {
            let text = format!(
                r#"{{"version":1,"recognizers":{{"{key}":{{"dataset":"d",{fields},"points":[{{"far":0.001,"threshold":0.36}}]}}}},"liveness":null}}"#
            );
            assert!(matches!(parse(&text), Err(CalibrationError::Invalid { .. })), "{key} {fields}");
        }
    }

    #[test]
    fn the_built_in_points_state_their_evidence_and_keep_the_interval_under_the_target() {
        for (recognizer, numerics) in [RecognizerKind::Sface, RecognizerKind::Mobilefacenet]
            .into_iter()
            .flat_map(|r| [(r, Numerics::REFERENCE), (r, OPENVINO_BF16)])
        {
            let c = Calibration::built_in(recognizer, numerics, LivenessKind::Ensemble);
            let point = c.point(1e-3).unwrap();
            let evidence = point.evidence.unwrap();
            assert_eq!(evidence.rule, ThresholdRule::Conservative);
            assert!(evidence.far_high_95 <= point.far, "{recognizer:?}: {evidence:?}");
            let recomputed = visage_stats::wilson_interval(
                evidence.false_accepts as usize,
                evidence.impostor_pairs as usize,
                visage_stats::Z_95,
            );
            assert!((recomputed.high - evidence.far_high_95).abs() < 1e-6, "{recomputed:?}");
            assert!((recomputed.low - evidence.far_low_95).abs() < 1e-6, "{recomputed:?}");
            let evaluation = c.evaluation.expect("the gauges need the run's rates from the start");
            assert!((evaluation.far_percent - evidence.far_estimate * 100.0).abs() < 1e-9);
            let expected_source = match numerics.precision {
                Precision::Bf16 => BUILT_IN_BF16_SOURCE,
                _ => BUILT_IN_SOURCE,
            };
            assert_eq!(c.source, expected_source);
            assert_eq!(c.measured_on, numerics);
            assert_eq!(point.threshold, recognizer.default_threshold());
        }
    }

    /// Scores with a known answer: 1,000 impostors at 0.000, 0.001, ..., 0.999 and genuine
    /// scores above them. At FAR 1% the point rule allows 10 false accepts (threshold 0.990);
    /// the upper end of the Wilson interval stays under 1% only up to 3 (3 of 1,000: 0.88%,
    /// 4: 1.02%), so the conservative threshold is 0.997.
    #[test]
    fn the_conservative_threshold_is_never_below_the_point_one_and_its_interval_ends_under_the_target() {
        let impostor: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let genuine: Vec<f64> = (0..200).map(|i| 0.9 + f64::from(i) / 1000.0).collect();
        let scores = visage_stats::ScoreSet::new(genuine, impostor).unwrap();
        let targets = [1e-1, 1e-2, 1e-3];
        let conservative = measure(&scores, &targets, ThresholdRule::Conservative);
        let point = measure(&scores, &targets, ThresholdRule::Point);
        assert_eq!(point.points[1].threshold, 0.99, "10 of 1,000 impostors at or above 0.990");
        assert_eq!(conservative.unresolved, [1e-3], "1,000 impostors cannot show FAR < 0.1%");
        assert_eq!(point.unresolved, Vec::<f64>::new());
        for (c, p) in conservative.points.iter().zip(&point.points) {
            let evidence = c.evidence.unwrap();
            assert!(c.threshold >= p.threshold, "{c:?} below {p:?}");
            assert!(evidence.far_high_95 <= c.far, "{c:?}");
            // The lowest such threshold: one impostor more and the bound passes the target.
            let one_more = visage_stats::wilson_interval(
                evidence.false_accepts as usize + 1,
                evidence.impostor_pairs as usize,
                visage_stats::Z_95,
            );
            assert!(one_more.high > c.far, "{c:?}");
        }
        let at_one_percent = conservative.points[1].evidence.unwrap();
        assert_eq!(at_one_percent.false_accepts, 3);
        assert_eq!(conservative.points[1].threshold, 0.997);
    }

    #[test]
    fn the_impostors_needed_are_the_fewest_whose_bound_reaches_the_target() {
        for target in [1e-1, 1e-2, 1e-3, 1e-4] {
            let n = impostors_needed(target);
            let high = |n: u64| visage_stats::wilson_interval(0, n as usize, visage_stats::Z_95).high;
            assert!(high(n) <= target && high(n - 1) > target, "{target}: {n}");
        }
        assert_eq!(impostors_needed(1e-3), 3838);
        assert_eq!(impostors_needed(1e-1), 35);
    }

    #[test]
    fn a_collection_calibration_reads_its_recognizers_points() {
        let document = r#"{"version":1,"recognizers":{"sface":{"dataset":"feedback","points":[{"far":0.1,"threshold":0.31}]}},"liveness":null}"#;
        let reference = Numerics::REFERENCE;
        let c = CollectionCalibration::parse(
            "feedback:door:2026-12-07",
            document,
            RecognizerKind::Sface,
            reference,
        )
        .unwrap();
        assert_eq!(c.point(0.1).unwrap().threshold, 0.31);
        assert!(c.point(1e-3).is_none());
        assert!(
            CollectionCalibration::parse("x", document, RecognizerKind::Mobilefacenet, reference).is_err()
        );
        let err =
            CollectionCalibration::parse("x", document, RecognizerKind::Sface, OPENVINO_BF16).unwrap_err();
        assert!(err.contains("openvino bf16"), "f32 decisions never calibrate a bf16 service: {err}");
        let broken = document.replace("0.31", "3.1");
        assert!(CollectionCalibration::parse("x", &broken, RecognizerKind::Sface, reference).is_err());
    }

    #[test]
    fn a_calibration_file_overrides_the_built_in_points() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Calibration::load(
                dir.path(),
                RecognizerKind::Sface,
                Numerics::REFERENCE,
                LivenessKind::Minifasnet
            )
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
        let c = Calibration::load(
            dir.path(),
            RecognizerKind::Sface,
            Numerics::REFERENCE,
            LivenessKind::Minifasnet,
        )
        .unwrap();
        assert_eq!(c.point(1e-4).unwrap().threshold, 0.42);
        assert!(c.point(1e-3).is_none());
        assert_eq!(c.liveness_threshold, 0.2, "a file without a model field calibrated MiniFASNet");
        let faceplugin = Calibration::load(
            dir.path(),
            RecognizerKind::Sface,
            Numerics::REFERENCE,
            LivenessKind::Faceplugin,
        )
        .unwrap();
        assert_eq!(faceplugin.liveness_threshold, LivenessKind::Faceplugin.default_threshold());
        let other = Calibration::load(
            dir.path(),
            RecognizerKind::Mobilefacenet,
            Numerics::REFERENCE,
            LivenessKind::Minifasnet,
        )
        .unwrap();
        assert_eq!(other.point(1e-3).unwrap().threshold, RecognizerKind::Mobilefacenet.default_threshold());
        std::fs::write(dir.path().join(FILE_NAME), r#"{"version":9,"recognizers":{}}"#).unwrap();
        assert!(matches!(
            Calibration::load(
                dir.path(),
                RecognizerKind::Sface,
                Numerics::REFERENCE,
                LivenessKind::Minifasnet
            ),
            Err(CalibrationError::Version { found: 9, .. })
        ));
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let err = Calibration::load(
            dir.path(),
            RecognizerKind::Sface,
            Numerics::REFERENCE,
            LivenessKind::Minifasnet,
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not a calibration file"), "{err}");
    }

    #[test]
    fn a_file_with_a_rate_or_threshold_out_of_range_is_refused() {
        let parse = |text: &str| {
            Calibration::parse(
                text,
                Path::new("c.json"),
                RecognizerKind::Sface,
                Numerics::REFERENCE,
                LivenessKind::Minifasnet,
            )
        };
        let file = |point: &str, liveness: &str| {
            format!(
                r#"{{"version":1,"recognizers":{{"sface":{{"dataset":"d","points":[{point}]}}}},"liveness":{liveness}}}"#
            )
        };
        let good_liveness = r#"{"dataset":"n","apcer_target":0.01,"threshold":0.2}"#;
        assert!(parse(&file(r#"{"far":0.001,"threshold":0.36}"#, good_liveness)).is_ok());
        for (point, liveness) in [
            (r#"{"far":0,"threshold":0.36}"#, good_liveness),
            (r#"{"far":1.5,"threshold":0.36}"#, good_liveness),
            (r#"{"far":0.001,"threshold":1.01}"#, good_liveness),
            (r#"{"far":0.001,"threshold":-7}"#, good_liveness),
            (r#"{"far":0.001,"threshold":0.36}"#, r#"{"dataset":"n","apcer_target":0.01,"threshold":2}"#),
            (r#"{"far":0.001,"threshold":0.36}"#, r#"{"dataset":"n","apcer_target":-1,"threshold":0.2}"#),
        ] {
            let err = parse(&file(point, liveness)).unwrap_err();
            assert!(matches!(err, CalibrationError::Invalid { .. }), "{point} {liveness}: {err}");
        }
    }
}
