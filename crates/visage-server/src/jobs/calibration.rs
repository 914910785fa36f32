//! `visage calibrate --from-feedback`: thresholds a collection earns from its own labelled
//! decisions. LFW is not the operator's population, cameras or lighting; the decisions the
//! operator has labelled (review queue, chargebacks) are. For each collection with enough labels
//! the conservative rule picks, for each FAR target the service offers, the lowest threshold
//! whose FAR's 95% Wilson interval ends under the target; the result is kept in the database,
//! where every replica reads it (within `index.poll_interval_ms`), and decisions in that
//! collection name it. A collection without enough labels keeps the global calibration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use visage_calibration::{
    Calibration, CalibrationFile, CollectionCalibration, EvaluationSummary, FORMAT_VERSION, OperatingPoint,
    RecognizerCalibration, ThresholdRule, impostors_needed,
};
use visage_face::Numerics;
use visage_store::{AuditAction, AuditOutcome, CollectionId, NewAuditEvent, Store};

use crate::config::Config;
use crate::resources::open_store;
use crate::service::enum_name;

/// Genuine labels a collection needs by default: fewer leave its false-reject rate at the new
/// thresholds unmeasured.
pub const MIN_GENUINE: usize = 20;

pub struct FromFeedback {
    /// One collection; every collection with labelled decisions when absent.
    pub collection: Option<CollectionId>,
    /// FAR targets to calibrate: some of the service's calibrated targets (all when empty).
    pub far_targets: Vec<f64>,
    pub min_genuine: usize,
    /// A folder to write each collection's calibration file to, besides the database.
    pub out: Option<PathBuf>,
    /// Measure and report, write nothing.
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
pub struct FeedbackReport {
    pub recognizer: String,
    pub rule: ThresholdRule,
    pub far_targets: Vec<f64>,
    pub collections: Vec<CollectionReport>,
}

#[derive(Debug, Serialize)]
pub struct CollectionReport {
    pub collection: String,
    pub genuine_labels: usize,
    pub impostor_labels: usize,
    /// Labelled identifications that found no candidate: their score was never kept, so
    /// they cannot count.
    pub labels_without_score: usize,
    /// What each target needs and whether it was resolved.
    pub targets: Vec<TargetReport>,
    /// The calibration written (or, with `--dry-run`, that would be): its name and points.
    pub calibration: Option<String>,
    pub points: Vec<OperatingPoint>,
    /// FAR, FRR and EER on the labels at the configured FAR target's new threshold.
    pub evaluation: Option<EvaluationSummary>,
    pub file: Option<PathBuf>,
    /// Why the collection keeps the global calibration.
    pub kept_global_because: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub far_target: f64,
    /// The fewest impostor labels that can show a FAR under the target (with no false accept).
    pub impostor_labels_needed: u64,
    pub resolved: bool,
}

impl FeedbackReport {
    pub fn calibrated(&self) -> usize {
        self.collections.iter().filter(|c| c.calibration.is_some()).count()
    }
}

/// Measures and keeps the collections' calibrations; fails when a collection named on its own,
/// or every collection, has too few labels (saying how many are needed and how many there are).
pub async fn from_feedback(config: &Config, options: &FromFeedback) -> anyhow::Result<FeedbackReport> {
    let recognizer = config.models.recognizer;
    let numerics = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || crate::resources::running_numerics(&config)).await??
    };
    let global = Calibration::load(&config.models.dir, recognizer, numerics, config.liveness.model)?;
    let far_targets = targets(&global, &options.far_targets)?;
    let store = open_store(config).await?;
    let outcome = run(store.as_ref(), config, numerics, options, &far_targets).await;
    store.close().await;
    let report = outcome?;
    if report.calibrated() == 0 {
        let reasons: Vec<String> = report
            .collections
            .iter()
            .filter_map(|c| c.kept_global_because.as_ref().map(|why| format!("{}: {why}", c.collection)))
            .collect();
        if reasons.is_empty() {
            bail!(
                "no labelled decisions to calibrate from (label them in the review queue or with POST /v1/verifications/{{id}}/feedback)"
            );
        }
        bail!(
            "not enough labelled decisions; every collection keeps the global calibration.\n{}",
            reasons.join("\n")
        );
    }
    Ok(report)
}

/// The requested FAR targets, each one the service offers (a request names a target the
/// deployment-wide calibration has: a collection's own calibration re-measures it).
fn targets(global: &Calibration, requested: &[f64]) -> anyhow::Result<Vec<f64>> {
    if requested.is_empty() {
        return Ok(global.targets());
    }
    for &far in requested {
        if global.point(far).is_none() {
            bail!(
                "FAR target {far} is not one the service offers ({:?}, from {}); a collection's calibration re-measures those",
                global.targets(),
                global.source
            );
        }
    }
    Ok(requested.to_vec())
}

async fn run(
    store: &dyn Store,
    config: &Config,
    numerics: Numerics,
    options: &FromFeedback,
    far_targets: &[f64],
) -> anyhow::Result<FeedbackReport> {
    let model = enum_name(&config.models.recognizer);
    if let Some(collection) = &options.collection
        && !store.collection_exists(collection).await?
    {
        bail!("collection {collection} does not exist");
    }
    let labelled = store.labelled_scores(options.collection.as_ref(), &model).await?;
    // Per collection: genuine scores, impostor scores, labels without a score.
    let mut grouped: BTreeMap<CollectionId, (Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
    if let Some(collection) = &options.collection {
        grouped.entry(collection.clone()).or_default();
    }
    for label in labelled {
        // Decisions on a reference image belong to no collection.
        let Some(collection) = label.collection else { continue };
        let entry = grouped.entry(collection).or_default();
        match (label.similarity, label.genuine) {
            (Some(s), true) => entry.0.push(f64::from(s)),
            (Some(s), false) => entry.1.push(f64::from(s)),
            (None, _) => entry.2 += 1,
        }
    }
    let date = Utc::now().format("%Y-%m-%d").to_string();
    let mut collections = Vec::new();
    for (collection, (genuine, impostor, without_score)) in grouped {
        let mut report =
            measure_collection(config, options, far_targets, &collection, genuine, impostor, &date);
        report.labels_without_score = without_score;
        if let (Some(name), false) = (&report.calibration, options.dry_run) {
            let scorer = (config.models.recognizer, numerics);
            report.file = keep(store, options, scorer, &model, &collection, name, &report).await?;
        }
        if options.collection.is_some()
            && let Some(why) = &report.kept_global_because
        {
            bail!("collection {collection} keeps the global calibration: {why}");
        }
        collections.push(report);
    }
    Ok(FeedbackReport {
        recognizer: model,
        rule: ThresholdRule::Conservative,
        far_targets: far_targets.to_vec(),
        collections,
    })
}

fn measure_collection(
    config: &Config,
    options: &FromFeedback,
    far_targets: &[f64],
    collection: &CollectionId,
    genuine: Vec<f64>,
    impostor: Vec<f64>,
    date: &str,
) -> CollectionReport {
    let mut report = CollectionReport {
        collection: collection.to_string(),
        genuine_labels: genuine.len(),
        impostor_labels: impostor.len(),
        labels_without_score: 0,
        targets: far_targets
            .iter()
            .map(|&far| TargetReport {
                far_target: far,
                impostor_labels_needed: impostors_needed(far),
                resolved: false,
            })
            .collect(),
        calibration: None,
        points: Vec::new(),
        evaluation: None,
        file: None,
        kept_global_because: None,
    };
    let fewest = far_targets.iter().map(|&far| impostors_needed(far)).min().unwrap_or(0);
    let mut short = Vec::new();
    if (impostor.len() as u64) < fewest {
        short.push(format!(
            "{} impostor labels, at least {fewest} needed for the easiest target ({})",
            impostor.len(),
            describe_needs(far_targets)
        ));
    }
    if genuine.len() < options.min_genuine.max(1) {
        short.push(format!(
            "{} genuine labels, at least {} needed",
            genuine.len(),
            options.min_genuine.max(1)
        ));
    }
    if !short.is_empty() {
        report.kept_global_because = Some(short.join("; "));
        return report;
    }
    let scores = visage_stats::ScoreSet::new(genuine, impostor).expect("both classes were counted");
    let measured = visage_calibration::measure(&scores, far_targets, ThresholdRule::Conservative);
    for target in &mut report.targets {
        target.resolved = !measured.unresolved.contains(&target.far_target);
    }
    let at = measured
        .points
        .iter()
        .find(|p| ((p.far - config.verification.far_target) / p.far).abs() < 1e-6)
        .or(measured.points.first());
    report.evaluation = at.map(|p| {
        let rates = scores.rates(f64::from(p.threshold));
        EvaluationSummary {
            far_percent: rates.far * 100.0,
            frr_percent: rates.frr * 100.0,
            eer_percent: scores.eer().rate * 100.0,
        }
    });
    report.calibration = Some(CollectionCalibration::name_for(collection.as_str(), date));
    report.points = measured.points;
    report
}

/// "FAR 0.001 needs 3838, FAR 0.1 needs 35".
fn describe_needs(far_targets: &[f64]) -> String {
    let needs: Vec<String> =
        far_targets.iter().map(|&far| format!("FAR {far} needs {}", impostors_needed(far))).collect();
    needs.join(", ")
}

/// Writes the collection's calibration to the database (and to `--out`), audited.
async fn keep(
    store: &dyn Store,
    options: &FromFeedback,
    (recognizer, numerics): (visage_face::RecognizerKind, Numerics),
    model: &str,
    collection: &CollectionId,
    name: &str,
    report: &CollectionReport,
) -> anyhow::Result<Option<PathBuf>> {
    let mut file = CalibrationFile { version: FORMAT_VERSION, recognizers: BTreeMap::new(), liveness: None };
    file.insert(
        recognizer,
        RecognizerCalibration {
            dataset: format!(
                "{name}: {} genuine and {} impostor labelled decisions of collection {collection}",
                report.genuine_labels, report.impostor_labels
            ),
            backend: numerics.backend,
            precision: numerics.precision,
            points: report.points.clone(),
            evaluation: report.evaluation,
        },
    );
    let document = serde_json::to_string_pretty(&file)? + "\n";
    // What the service will read back must parse: never keep a calibration it would refuse.
    CollectionCalibration::parse(name, &document, recognizer, numerics).map_err(anyhow::Error::msg)?;
    let written = match &options.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join(format!("calibration-{collection}.json"));
            std::fs::write(&path, &document).with_context(|| format!("cannot write {}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    store
        .put_collection_calibration(&visage_store::StoredCalibration {
            collection: collection.clone(),
            name: name.to_owned(),
            model: model.to_owned(),
            document,
            created_at: Utc::now(),
        })
        .await?;
    store
        .append_audit(&NewAuditEvent {
            api_key_id: None,
            action: AuditAction::CalibrationSet,
            outcome: AuditOutcome::Ok,
            collection: Some(collection.clone()),
            subject_id: None,
            detail: json!({
                "calibration": name,
                "recognizer": model,
                "genuine_labels": report.genuine_labels,
                "impostor_labels": report.impostor_labels,
                "points": report.points.iter().map(|p| json!({ "far": p.far, "threshold": p.threshold })).collect::<Vec<_>>(),
            }),
        })
        .await?;
    Ok(written)
}

/// Drops a collection's own calibration: its decisions go back to the global one (on every
/// replica within `index.poll_interval_ms`). Audited. False when it had none.
pub async fn reset(config: &Config, collection: &CollectionId) -> anyhow::Result<bool> {
    let store = open_store(config).await?;
    let outcome = async {
        let dropped = store.delete_collection_calibration(collection).await?;
        if dropped {
            store
                .append_audit(&NewAuditEvent {
                    api_key_id: None,
                    action: AuditAction::CalibrationSet,
                    outcome: AuditOutcome::Ok,
                    collection: Some(collection.clone()),
                    subject_id: None,
                    detail: json!({ "calibration": "global", "reset": true }),
                })
                .await?;
        }
        anyhow::Ok(dropped)
    }
    .await;
    store.close().await;
    outcome
}
