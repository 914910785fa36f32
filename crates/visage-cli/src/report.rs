//! `visage evaluate` and `visage evaluate-liveness`: error rates on labelled data, written as
//! a JSON report with a stable schema, DET and score-histogram charts (SVG) and a Markdown
//! summary, all in one output folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use visage_calibration::Calibration;
use visage_face::{BackendKind, Numerics, Precision, RecognizerKind};
use visage_plot::{Curve, DetChart, HistogramChart, Marker, percent_label};
use visage_stats::{CrossValidation, Eer, Interval, ScoreSet, TarAtFar, pad::PadReport};

use crate::commands::Context;
use crate::dataset::{Comparisons, DatasetInfo};
use crate::evaluation::{
    CacheArgs, FAILURE_POLICY, FailedImage, LivenessScores, PairScores, embed_with_each, liveness_samples,
    score_comparisons, score_liveness,
};

/// Bumped only when a field changes meaning or disappears; new fields may be added.
pub const EVALUATION_SCHEMA: &str = "visage.evaluation/1";
pub const LIVENESS_SCHEMA: &str = "visage.liveness-evaluation/1";

const FAR_TARGETS: [f64; 3] = [1e-2, 1e-3, 1e-4];

#[derive(Debug, Serialize)]
pub struct EvaluationReport {
    pub schema: &'static str,
    pub visage_version: &'static str,
    pub dataset: DatasetInfo,
    pub recognizer: RecognizerKind,
    /// The recognizer whose cosine was averaged in (`--fuse-with`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused_with: Option<RecognizerKind>,
    pub backend: BackendKind,
    /// The precision the backend ran (bf16 scores need bf16 thresholds).
    pub precision: Precision,
    pub pairs: PairCounts,
    pub images: ImageCounts,
    pub threshold: ThresholdChoice,
    pub at_threshold: AtThreshold,
    pub eer: Eer,
    /// k-fold accuracy: each fold judged at the best-accuracy threshold of the others
    /// (`null` with fewer than two pairs of a kind).
    pub cross_validation: Option<CrossValidation>,
    /// TAR and the threshold this data gives for each FAR target (`null` where there are
    /// too few impostor pairs to resolve it).
    pub tar_at_far: Vec<TarAtFar>,
    /// The smallest FAR the impostor pairs can resolve (one false accept).
    pub far_resolution: f64,
    pub files: OutputFiles,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct PairCounts {
    pub genuine: usize,
    pub impostor: usize,
    pub with_failed_image: usize,
}

#[derive(Debug, Serialize)]
pub struct ImageCounts {
    pub total: usize,
    pub embedded_now: usize,
    pub from_cache: usize,
    pub failed_by_code: BTreeMap<String, usize>,
    pub failed: Vec<FailedImage>,
    pub failure_policy: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdChoice {
    pub value: f64,
    /// `command line`, or the calibration the service would use.
    pub source: String,
    /// The FAR the threshold was calibrated for, when it came from a calibration.
    pub far_target: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AtThreshold {
    pub far: f64,
    pub frr: f64,
    /// 1 - FRR: with a threshold calibrated for a FAR target elsewhere, this is the TAR at
    /// that target's operating point even where this data is too small to resolve the FAR.
    pub tar: f64,
    pub far_95ci: Interval,
    pub frr_95ci: Interval,
    /// Over the dataset's own pairs (impostor pairs sampled on top of a pairs file left out,
    /// so the figure stays comparable with the file's protocol).
    pub accuracy: f64,
}

#[derive(Debug, Serialize)]
pub struct OutputFiles {
    pub report: PathBuf,
    pub det: PathBuf,
    pub histogram: PathBuf,
    pub summary: PathBuf,
}

impl OutputFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            report: dir.join("report.json"),
            det: dir.join("det.svg"),
            histogram: dir.join("scores.svg"),
            summary: dir.join("summary.md"),
        }
    }
}

/// The default output folder: `reports/<command>-<dataset name>`.
fn default_out(command: &str, source: &Path) -> PathBuf {
    let name = source.file_stem().and_then(|s| s.to_str()).unwrap_or("dataset");
    PathBuf::from("reports").join(format!("{command}-{name}"))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub struct EvaluateArgs<'a> {
    pub comparisons: Comparisons,
    pub threshold: Option<f32>,
    pub far_target: f64,
    pub out: Option<&'a Path>,
    pub cache: &'a CacheArgs,
    pub threads: Option<usize>,
}

/// The decision threshold: the command line's, else the one the service would use.
fn choose_threshold(
    ctx: &Context,
    numerics: Numerics,
    threshold: Option<f32>,
    far_target: f64,
) -> anyhow::Result<ThresholdChoice> {
    if let Some(value) = threshold {
        return Ok(ThresholdChoice {
            value: f64::from(value),
            source: "command line".into(),
            far_target: None,
        });
    }
    let calibration = Calibration::load(&ctx.models_dir, ctx.recognizer, numerics, ctx.liveness)?;
    let point = calibration.point(far_target).with_context(|| {
        format!(
            "{} has no threshold for FAR {far_target} (it has {:?}); pass --threshold or --far-target",
            calibration.source,
            calibration.targets()
        )
    })?;
    Ok(ThresholdChoice {
        value: f64::from(point.threshold),
        source: calibration.source,
        far_target: Some(point.far),
    })
}

pub fn evaluate(ctx: &Context, args: EvaluateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let engines = ctx.scoring_engines()?;
    let numerics = engines[0].numerics();
    let threshold = choose_threshold(ctx, numerics, args.threshold, args.far_target)?;
    let comparisons = args.comparisons;
    let all_embedded = embed_with_each(&engines, &comparisons.images, args.cache, args.threads)?;
    let pair_scores = score_comparisons(&comparisons, &all_embedded)?;
    let embedded = &all_embedded[0];
    let protocol = pair_scores.protocol()?;
    let PairScores { scores, folds, failed_pairs } = pair_scores;
    let cross_validation = if folds.len() >= 2 {
        Some(visage_stats::cross_validate(&folds).map_err(anyhow::Error::msg)?)
    } else {
        None
    };

    let out_dir =
        args.out.map_or_else(|| default_out("evaluate", &comparisons.info.source), Path::to_path_buf);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let files = OutputFiles::in_dir(&out_dir);
    let t = threshold.value;
    let (far_95ci, frr_95ci) = scores.confidence_95(t);
    let mut failed_by_code = BTreeMap::new();
    for failure in &embedded.failures {
        *failed_by_code.entry(failure.code.clone()).or_insert(0) += 1;
    }
    let report = EvaluationReport {
        schema: EVALUATION_SCHEMA,
        visage_version: env!("CARGO_PKG_VERSION"),
        dataset: comparisons.info.clone(),
        recognizer: ctx.recognizer,
        fused_with: ctx.fuse_with,
        backend: numerics.backend,
        precision: numerics.precision,
        pairs: PairCounts {
            genuine: scores.genuine().len(),
            impostor: scores.impostor().len(),
            with_failed_image: failed_pairs,
        },
        images: ImageCounts {
            total: comparisons.images.len(),
            embedded_now: embedded.computed,
            from_cache: embedded.from_cache,
            failed_by_code,
            failed: embedded.failures.clone(),
            failure_policy: FAILURE_POLICY,
        },
        at_threshold: AtThreshold {
            far: scores.far(t),
            frr: scores.frr(t),
            tar: 1.0 - scores.frr(t),
            far_95ci,
            frr_95ci,
            accuracy: protocol.accuracy(t),
        },
        threshold,
        eer: scores.eer(),
        cross_validation,
        tar_at_far: FAR_TARGETS.iter().map(|&f| scores.tar_at_far(f)).collect(),
        far_resolution: scores.far_resolution(),
        files,
        seconds: started.elapsed().as_secs_f64(),
    };
    write(&report.files.det, &verification_det(&report, &scores)?)?;
    write(&report.files.histogram, &verification_histogram(&report, &scores)?)?;
    write(&report.files.summary, &verification_summary(&report))?;
    let json = serde_json::to_string_pretty(&report)?;
    write(&report.files.report, &(json.clone() + "\n"))?;
    println!("{json}");
    eprintln!("wrote {}", out_dir.display());
    Ok(())
}

fn dataset_name(info: &DatasetInfo) -> String {
    info.source.file_name().and_then(|n| n.to_str()).unwrap_or("dataset").to_owned()
}

fn verification_det(report: &EvaluationReport, scores: &ScoreSet) -> anyhow::Result<String> {
    let curve = Curve {
        name: format!(
            "{} ({})",
            format!("{:?}", report.recognizer).to_lowercase(),
            dataset_name(&report.dataset)
        ),
        points: scores.curve().iter().map(|r| (r.far, r.frr)).collect(),
    };
    let marker = Marker {
        label: format!("threshold {:.4}", report.threshold.value),
        x: report.at_threshold.far,
        y: report.at_threshold.frr,
    };
    let title = format!(
        "DET: {} genuine / {} impostor pairs, EER {}",
        report.pairs.genuine,
        report.pairs.impostor,
        pct(report.eer.rate)
    );
    Ok(visage_plot::det_svg(&DetChart {
        title: &title,
        x_label: "false accept rate (FAR, FMR)",
        y_label: "false reject rate (FRR, FNMR)",
        curves: &[curve],
        markers: &[marker],
        x_floor: scores.far_resolution(),
        y_floor: 1.0 / scores.genuine().len() as f64,
    })?)
}

fn verification_histogram(report: &EvaluationReport, scores: &ScoreSet) -> anyhow::Result<String> {
    let groups = [
        (format!("genuine ({})", scores.genuine().len()), scores.genuine().to_vec()),
        (format!("impostor ({})", scores.impostor().len()), scores.impostor().to_vec()),
    ];
    Ok(visage_plot::histogram_svg(&HistogramChart {
        title: "Similarity of genuine and impostor pairs",
        x_label: "cosine similarity (failed images score -1, drawn at the left edge)",
        groups: &groups,
        threshold: Some((format!("threshold {:.4}", report.threshold.value), report.threshold.value)),
        range: (-0.4, 1.0),
        bins: 70,
    })?)
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

fn verification_summary(r: &EvaluationReport) -> String {
    let mut md = String::new();
    let name = dataset_name(&r.dataset);
    let _ = writeln!(md, "# Verification accuracy on {name}\n");
    let _ = writeln!(
        md,
        "visage {}, recognizer `{}`, backend `{}` in {}. Schema `{}` (report.json).\n",
        r.visage_version,
        format!("{:?}", r.recognizer).to_lowercase(),
        r.backend.as_str(),
        r.precision.as_str(),
        r.schema
    );
    let failed = if r.images.failed.is_empty() {
        "none".to_owned()
    } else {
        r.images.failed_by_code.iter().map(|(c, n)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
    };
    let cross_validated = match &r.cross_validation {
        Some(cv) => format!(
            "{} ± {} ({} folds, {})",
            pct(cv.mean_accuracy),
            pct(cv.standard_error),
            cv.folds.len(),
            r.dataset.folds
        ),
        None => "too few pairs to cross-validate".to_owned(),
    };
    let rows = [
        ("Pairs", format!("{} genuine, {} impostor", r.pairs.genuine, r.pairs.impostor)),
        (
            "Images",
            format!(
                "{} ({} embedded now, {} from cache); failed: {failed}",
                r.images.total, r.images.embedded_now, r.images.from_cache
            ),
        ),
        ("Pairs with a failed image", format!("{} (scored as non-matches)", r.pairs.with_failed_image)),
        ("Threshold", format!("{:.4} ({})", r.threshold.value, r.threshold.source)),
        (
            "FAR at threshold",
            format!(
                "{} (95% CI {} to {})",
                pct(r.at_threshold.far),
                pct(r.at_threshold.far_95ci.low),
                pct(r.at_threshold.far_95ci.high)
            ),
        ),
        (
            "FRR at threshold",
            format!(
                "{} (95% CI {} to {})",
                pct(r.at_threshold.frr),
                pct(r.at_threshold.frr_95ci.low),
                pct(r.at_threshold.frr_95ci.high)
            ),
        ),
        (
            "TAR at threshold",
            match r.threshold.far_target {
                Some(far) => format!(
                    "{} (the operating point calibrated for FAR {})",
                    pct(r.at_threshold.tar),
                    percent_label(far)
                ),
                None => pct(r.at_threshold.tar),
            },
        ),
        ("Accuracy at threshold", pct(r.at_threshold.accuracy)),
        ("Accuracy, cross-validated", cross_validated),
        ("EER", format!("{} at threshold {:.4}", pct(r.eer.rate), r.eer.threshold)),
    ];
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    for t in &r.tar_at_far {
        let value = match (t.tar, t.threshold) {
            (Some(tar), Some(th)) => format!(
                "{} at threshold {th:.4}{}",
                pct(tar),
                if t.rule_of_30_met { "" } else { " (fewer than 30 / FAR impostor pairs: indicative)" }
            ),
            _ => format!(
                "not resolvable: {} impostor pairs resolve FAR down to {}",
                r.pairs.impostor,
                pct(r.far_resolution)
            ),
        };
        let _ = writeln!(md, "| TAR at FAR {} | {value} |", percent_label(t.far_target));
    }
    let _ = writeln!(md, "\n![DET curve](det.svg)\n\n![Score distributions](scores.svg)\n");
    let _ = writeln!(md, "Failed images: {}.", r.images.failure_policy);
    md
}

#[derive(Debug, Serialize)]
pub struct LivenessReport {
    pub schema: &'static str,
    pub visage_version: &'static str,
    pub dataset: LivenessDataset,
    /// The backend and precision that computed the scores.
    pub backend: BackendKind,
    pub precision: Precision,
    pub threshold: ThresholdChoice,
    /// The liveness model chosen with `--liveness-model` (the one whose threshold is used).
    pub primary_model: String,
    /// ISO/IEC 30107-3 figures per liveness model (each model alone and the ensembles);
    /// `at_threshold` uses the report's threshold, which belongs to `primary_model`.
    pub models: BTreeMap<String, ModelPad>,
    pub failed_images: Vec<FailedImage>,
    pub files: OutputFiles,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct LivenessDataset {
    pub dir: PathBuf,
    /// Empty: every subject.
    pub subjects: Vec<String>,
    pub bona_fide: usize,
    pub attacks_by_type: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct ModelPad {
    /// At the report's threshold.
    pub at_threshold: PadReport,
    /// The threshold where the worst attack type's APCER is at most the target, and the
    /// BPCER it costs.
    pub apcer_target: f64,
    pub threshold_at_target: f64,
    pub bpcer_at_target: f64,
    /// Equal error rate of bona fide against all attacks.
    pub eer: Eer,
}

pub struct EvaluateLivenessArgs<'a> {
    pub dir: &'a Path,
    pub subjects: &'a [String],
    pub threshold: Option<f32>,
    pub apcer_target: f64,
    pub out: Option<&'a Path>,
    pub threads: Option<usize>,
}

pub fn model_pad(scores: &LivenessScores, threshold: f64, apcer_target: f64) -> anyhow::Result<ModelPad> {
    let at_threshold = visage_stats::pad::evaluate(&scores.bona_fide, &scores.attacks, threshold)
        .map_err(anyhow::Error::msg)?;
    let threshold_at_target = worst_type_threshold(scores, apcer_target)?;
    let all_attacks: Vec<f64> = scores.attacks.values().flatten().copied().collect();
    let all = ScoreSet::new(scores.bona_fide.clone(), all_attacks).map_err(anyhow::Error::msg)?;
    Ok(ModelPad {
        at_threshold,
        apcer_target,
        threshold_at_target,
        bpcer_at_target: all.frr(threshold_at_target),
        eer: all.eer(),
    })
}

/// The lowest threshold keeping every attack type's APCER at or under `target`.
pub fn worst_type_threshold(scores: &LivenessScores, target: f64) -> anyhow::Result<f64> {
    scores
        .attacks
        .values()
        .map(|a| ScoreSet::new(scores.bona_fide.clone(), a.clone()).map(|s| s.threshold_for_far(target)))
        .try_fold(f64::MIN, |worst, t| t.map(|t| worst.max(t)))
        .map_err(anyhow::Error::msg)
}

pub fn evaluate_liveness(ctx: &Context, args: EvaluateLivenessArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (engine, model) = ctx.engine_and_all_liveness()?;
    let numerics = engine.numerics();
    let threshold = match args.threshold {
        Some(value) => {
            ThresholdChoice { value: f64::from(value), source: "command line".into(), far_target: None }
        }
        None => {
            let calibration = Calibration::load(&ctx.models_dir, ctx.recognizer, numerics, ctx.liveness)?;
            ThresholdChoice {
                value: f64::from(calibration.liveness_threshold),
                source: calibration.liveness_source,
                far_target: None,
            }
        }
    };
    let samples = liveness_samples(args.dir, args.subjects)?;
    let (per_model, failed_images) = score_liveness(&samples, args.threads, |bytes| {
        let image = engine.decode(bytes)?;
        let faces = engine.detect(&image)?;
        let face = engine.select(&image, &faces)?;
        Ok(model.score_each(&image, face)?.into_iter().map(|(m, s)| (m.to_owned(), f64::from(s))).collect())
    })?;
    let primary = per_model.get(ctx.liveness.name()).context("no image gave a liveness score")?;
    let models = per_model
        .iter()
        .map(|(name, scores)| Ok((name.clone(), model_pad(scores, threshold.value, args.apcer_target)?)))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;

    let out_dir = args.out.map_or_else(|| default_out("evaluate-liveness", args.dir), Path::to_path_buf);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let report = LivenessReport {
        schema: LIVENESS_SCHEMA,
        visage_version: env!("CARGO_PKG_VERSION"),
        dataset: LivenessDataset {
            dir: args.dir.to_path_buf(),
            subjects: args.subjects.to_vec(),
            bona_fide: primary.bona_fide.len(),
            attacks_by_type: primary.attacks.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        },
        backend: numerics.backend,
        precision: numerics.precision,
        threshold,
        primary_model: ctx.liveness.name().into(),
        models,
        failed_images,
        files: OutputFiles::in_dir(&out_dir),
        seconds: started.elapsed().as_secs_f64(),
    };
    write(&report.files.det, &liveness_det(&report, &per_model)?)?;
    write(&report.files.histogram, &liveness_histogram(&report, primary)?)?;
    write(&report.files.summary, &liveness_summary(&report))?;
    let json = serde_json::to_string_pretty(&report)?;
    write(&report.files.report, &(json.clone() + "\n"))?;
    println!("{json}");
    eprintln!("wrote {}", out_dir.display());
    Ok(())
}

fn liveness_det(
    report: &LivenessReport,
    per_model: &BTreeMap<String, LivenessScores>,
) -> anyhow::Result<String> {
    let mut curves = Vec::new();
    for (name, scores) in per_model {
        for (kind, attacks) in &scores.attacks {
            let set = ScoreSet::new(scores.bona_fide.clone(), attacks.clone()).map_err(anyhow::Error::msg)?;
            curves.push(Curve {
                name: format!("{name} ({kind})"),
                points: set.curve().iter().map(|r| (r.far, r.frr)).collect(),
            });
        }
    }
    let primary = &report.models[&report.primary_model].at_threshold;
    let markers = [Marker {
        label: format!("{} at threshold {:.4}", report.primary_model, report.threshold.value),
        x: primary.apcer,
        y: primary.bpcer,
    }];
    let attacks: usize = report.dataset.attacks_by_type.values().sum();
    let title =
        format!("Liveness DET: {} bona fide / {attacks} attack presentations", report.dataset.bona_fide);
    Ok(visage_plot::det_svg(&DetChart {
        title: &title,
        x_label: "APCER (attacks accepted as live)",
        y_label: "BPCER (live people rejected)",
        curves: &curves,
        markers: &markers,
        x_floor: 1.0 / attacks.max(1) as f64,
        y_floor: 1.0 / report.dataset.bona_fide.max(1) as f64,
    })?)
}

fn liveness_histogram(report: &LivenessReport, scores: &LivenessScores) -> anyhow::Result<String> {
    let mut groups = vec![(format!("bona fide ({})", scores.bona_fide.len()), scores.bona_fide.clone())];
    for (kind, attacks) in &scores.attacks {
        groups.push((format!("attack: {kind} ({})", attacks.len()), attacks.clone()));
    }
    let title = format!("Live probability ({})", report.primary_model);
    Ok(visage_plot::histogram_svg(&HistogramChart {
        title: &title,
        x_label: "live probability",
        groups: &groups,
        threshold: Some((format!("threshold {:.4}", report.threshold.value), report.threshold.value)),
        range: (0.0, 1.0),
        bins: 50,
    })?)
}

fn liveness_summary(r: &LivenessReport) -> String {
    let mut md = String::new();
    let subjects =
        if r.dataset.subjects.is_empty() { "all".to_owned() } else { r.dataset.subjects.join(", ") };
    let _ = writeln!(md, "# Liveness (presentation attack detection) on {}\n", r.dataset.dir.display());
    let attacks =
        r.dataset.attacks_by_type.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        md,
        "visage {}; subjects: {subjects}; {} bona fide and {attacks} attack presentations; {} images failed \
         (no usable face), not counted. Threshold {:.4} ({}). Schema `{}` (report.json).\n",
        r.visage_version,
        r.dataset.bona_fide,
        r.failed_images.len(),
        r.threshold.value,
        r.threshold.source,
        r.schema
    );
    let target = r.models.values().next().map_or(0.0, |m| m.apcer_target);
    let _ = writeln!(
        md,
        "| model | APCER (worst type) | BPCER | ACER | BPCER at APCER 5% | BPCER at APCER 1% | threshold at APCER {} | EER |",
        percent_label(target)
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (name, m) in &r.models {
        let p = &m.at_threshold;
        // The threshold belongs to the chosen model: the others are compared threshold-free.
        let (lead, apcer, bpcer, acer) = if *name == r.primary_model {
            (" (chosen)", pct(p.apcer), pct(p.bpcer), pct(p.acer))
        } else {
            ("", "—".into(), "—".into(), "—".into())
        };
        let _ = writeln!(
            md,
            "| {name}{lead} | {apcer} | {bpcer} | {acer} | {} | {} | {:.4} | {} |",
            pct(p.bpcer_at_apcer_5pct),
            pct(p.bpcer_at_apcer_1pct),
            m.threshold_at_target,
            pct(m.eer.rate)
        );
    }
    let _ = writeln!(md, "\n![DET curves](det.svg)\n\n![Score distributions](scores.svg)");
    md
}
