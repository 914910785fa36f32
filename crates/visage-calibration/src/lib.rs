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
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
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
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path, recognizer, liveness),
            Err(source) => Err(CalibrationError::Read { path, source }),
        }
    }

    /// A calibration file's `text` (read from `path`, which messages name), checked: every
    /// FAR target and APCER target a rate in (0, 1), every threshold a finite similarity in
    /// [-1, 1] (liveness: [0, 1]), every reported rate a percentage. A hand-edited file that
    /// breaks one is refused, never served.
    pub fn parse(
        text: &str,
        path: &Path,
        recognizer: RecognizerKind,
        liveness: LivenessKind,
    ) -> Result<Self, CalibrationError> {
        let file = CalibrationFile::read(text, path)?;
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
    /// sampled impostor pairs) by `visage calibrate` (docs/accuracy.md), with that run's
    /// evidence and error rates, so that a service without a calibration file still states
    /// what its threshold stands for and exports the `source="calibration"` gauges.
    pub fn built_in(recognizer: RecognizerKind, liveness: LivenessKind) -> Self {
        let run = built_in_run(recognizer);
        Self {
            source: BUILT_IN_SOURCE.into(),
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

    /// The points for `recognizer` in a calibration file's `document`, checked as a file is.
    pub fn parse(name: &str, document: &str, recognizer: RecognizerKind) -> Result<Self, String> {
        let file = CalibrationFile::read(document, Path::new(name)).map_err(|e| e.to_string())?;
        let entry = file
            .recognizers
            .get(&recognizer_name(recognizer))
            .ok_or_else(|| format!("no thresholds for {}", recognizer_name(recognizer)))?;
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

/// What a service without a calibration file calls its calibration.
pub const BUILT_IN_SOURCE: &str = "built-in (LFW pairsDevTrain, conservative)";

/// The calibration run behind a built-in threshold.
struct BuiltInRun {
    evidence: FarEvidence,
    evaluation: EvaluationSummary,
}

/// `visage [--recognizer R] calibrate --pairs ../shared/data/lfw-dev/pairsDevTrain.txt
/// --impostor-pairs 300000` at FAR 1e-3 (301,100 impostor pairs, 1,100 genuine); the
/// built-in threshold is its threshold rounded up to three decimals, which can only lower the
/// false accepts counted here.
fn built_in_run(recognizer: RecognizerKind) -> BuiltInRun {
    let run = |false_accepts: u64, low: f64, high: f64, frr_percent: f64, eer_percent: f64| BuiltInRun {
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
    match recognizer {
        RecognizerKind::Sface => run(267, 0.000_786_6, 0.000_999_6, 1.363_636, 0.727_273),
        RecognizerKind::Mobilefacenet => run(267, 0.000_786_6, 0.000_999_6, 2.0, 0.727_273),
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

    #[test]
    fn the_built_in_points_state_their_evidence_and_keep_the_interval_under_the_target() {
        for recognizer in [RecognizerKind::Sface, RecognizerKind::Mobilefacenet] {
            let c = Calibration::built_in(recognizer, LivenessKind::Ensemble);
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
            assert_eq!(c.source, BUILT_IN_SOURCE);
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
        let c = CollectionCalibration::parse("feedback:door:2026-12-07", document, RecognizerKind::Sface)
            .unwrap();
        assert_eq!(c.point(0.1).unwrap().threshold, 0.31);
        assert!(c.point(1e-3).is_none());
        assert!(CollectionCalibration::parse("x", document, RecognizerKind::Mobilefacenet).is_err());
        let broken = document.replace("0.31", "3.1");
        assert!(CollectionCalibration::parse("x", &broken, RecognizerKind::Sface).is_err());
    }

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

    #[test]
    fn a_file_with_a_rate_or_threshold_out_of_range_is_refused() {
        let parse = |text: &str| {
            Calibration::parse(text, Path::new("c.json"), RecognizerKind::Sface, LivenessKind::Minifasnet)
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
