use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::evaluation::{embed_with_each, liveness_samples, score_comparisons, score_liveness};
use crate::report::worst_type_threshold;
use anyhow::{Context as _, bail};
use serde_json::json;
use visage_face::{
    BackendKind, DecodeLimits, EngineConfig, FaceEngine, FaceSelection, InferenceBackend, LivenessKind,
    LivenessModel, ModelPaths, Precision, RecognizerKind, models,
};

/// `LivenessModel::load` or `LivenessModel::load_all`.
type LoadLiveness =
    fn(&ModelPaths, &dyn InferenceBackend, LivenessKind) -> Result<LivenessModel, visage_face::FaceError>;

#[derive(Clone)]
pub struct Context {
    pub models_dir: PathBuf,
    pub backend: BackendKind,
    /// Whether `--backend` (or `VISAGE_BACKEND`) named it: a named backend must run, the
    /// default may fall back to ONNX Runtime as the service does (the reports name the one
    /// that ran).
    pub backend_named: bool,
    pub precision: Precision,
    pub recognizer: RecognizerKind,
    pub decode: DecodeLimits,
    pub selection: FaceSelection,
    pub liveness: LivenessKind,
    pub flip_tta: bool,
    /// A second recognizer whose cosine is averaged with the first's (`--fuse-with`).
    pub fuse_with: Option<RecognizerKind>,
}

impl Context {
    pub fn engine(&self) -> anyhow::Result<FaceEngine> {
        Ok(self.load(None)?.0)
    }

    /// The engines whose scores a pair gets: the chosen recognizer's, then the fused one's.
    pub fn scoring_engines(&self) -> anyhow::Result<Vec<FaceEngine>> {
        let mut engines = vec![self.engine()?];
        if let Some(other) = self.fuse_with {
            if other == self.recognizer {
                bail!("--fuse-with names the recognizer already chosen");
            }
            let fused = Self { recognizer: other, fuse_with: None, ..self.clone() };
            engines.push(fused.engine()?);
        }
        Ok(engines)
    }

    /// The face engine and the liveness models, on one backend.
    pub fn engine_and_liveness(&self) -> anyhow::Result<(FaceEngine, LivenessModel)> {
        let (engine, liveness) = self.load(Some(LivenessModel::load))?;
        Ok((engine, liveness.expect("requested")))
    }

    /// The face engine and every liveness model there is, scoring as the chosen kind.
    pub fn engine_and_all_liveness(&self) -> anyhow::Result<(FaceEngine, LivenessModel)> {
        let (engine, liveness) = self.load(Some(LivenessModel::load_all))?;
        Ok((engine, liveness.expect("requested")))
    }

    /// The engine, and the liveness models `liveness` loads, on one backend.
    fn load(&self, liveness: Option<LoadLiveness>) -> anyhow::Result<(FaceEngine, Option<LivenessModel>)> {
        let config = EngineConfig {
            selection: self.selection,
            recognizer: self.recognizer,
            decode: self.decode,
            flip_tta: self.flip_tta,
            ..EngineConfig::default()
        };
        let paths = ModelPaths::new(&self.models_dir);
        let backend = self.backend(&paths)?;
        let engine = FaceEngine::load(&paths, backend.as_ref(), config)?;
        let liveness = liveness.map(|load| load(&paths, backend.as_ref(), self.liveness)).transpose()?;
        Ok((engine, liveness))
    }

    fn backend(&self, paths: &ModelPaths) -> anyhow::Result<Box<dyn InferenceBackend>> {
        let parallelism = crate::evaluation::thread_count(None);
        if self.backend_named {
            return Ok(self.backend.create_with(paths, parallelism, self.precision)?);
        }
        let (backend, fallback) = self.backend.create_or_fall_back(paths, parallelism, self.precision)?;
        if let Some(fallback) = fallback {
            eprintln!(
                "visage: the {} backend cannot run here ({}): running on {}",
                fallback.requested.as_str(),
                fallback.reason,
                backend.name()
            );
        }
        Ok(backend)
    }
}

/// Scores printed with the precision they carry (f32), not f32-to-f64 noise digits.
fn round6(value: f32) -> f64 {
    (f64::from(value) * 1e6).round() / 1e6
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Prints one JSON line per image; a failing image is reported on stderr and the command
/// fails at the end, after the others were processed.
fn for_each_image(
    images: &[PathBuf],
    work: impl Fn(&Path, Vec<u8>) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in images {
        match read(path).and_then(|bytes| work(path, bytes)) {
            Ok(line) => println!("{line}"),
            Err(err) => {
                failed += 1;
                eprintln!("visage: {}: {err:#}", path.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images failed", images.len());
    }
    Ok(())
}

pub fn detect(ctx: &Context, images: &[PathBuf]) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    for_each_image(images, |path, bytes| {
        let image = engine.decode(&bytes)?;
        let faces = engine.detect(&image)?;
        let analyzed =
            faces.iter().map(|face| engine.analyze(&image, face)).collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "image": path, "width": image.width(), "height": image.height(), "faces": analyzed }))
    })
}

pub fn compare(ctx: &Context, a: &Path, b: &Path, threshold: Option<f32>) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    let threshold = threshold.unwrap_or(engine.config().recognizer.default_threshold());
    let analyze = |path: &Path| -> anyhow::Result<_> {
        engine.analyze_bytes(&read(path)?).with_context(|| path.display().to_string())
    };
    let (fa, fb) = (analyze(a)?, analyze(b)?);
    let similarity = fa.embedding.cosine(&fb.embedding);
    let out = json!({
        "similarity": round6(similarity),
        "threshold": round6(threshold),
        "match": similarity >= threshold,
        "recognizer": engine.config().recognizer,
        "faces": [fa, fb],
    });
    println!("{out}");
    Ok(())
}

pub fn liveness(ctx: &Context, images: &[PathBuf], threshold: Option<f32>) -> anyhow::Result<()> {
    let (engine, model) = ctx.engine_and_liveness()?;
    let threshold = match threshold {
        Some(t) => t,
        None => {
            visage_calibration::Calibration::load(
                &ctx.models_dir,
                ctx.recognizer,
                engine.numerics(),
                ctx.liveness,
            )?
            .liveness_threshold
        }
    };
    for_each_image(images, |path, bytes| {
        let image = engine.decode(&bytes)?;
        let faces = engine.detect(&image)?;
        if faces.is_empty() {
            return Err(visage_face::FaceError::NoFace.into());
        }
        let faces = faces
            .iter()
            .map(|face| {
                let score = model.score(&image, face)?;
                Ok(json!({
                    "live": score.is_live(threshold),
                    "score": round6(score.live),
                    "attack_type": score.attack_type(threshold),
                    "threshold": round6(threshold),
                    "box": face.bbox,
                    "detection_score": face.score,
                }))
            })
            .collect::<Result<Vec<_>, visage_face::FaceError>>()?;
        Ok(json!({ "image": path, "faces": faces }))
    })
}

pub fn embed(ctx: &Context, image: &Path) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    let face = engine.analyze_bytes(&read(image)?).with_context(|| image.display().to_string())?;
    let out = json!({
        "image": image,
        "recognizer": engine.config().recognizer,
        "dimension": face.embedding.dimension(),
        "embedding": face.embedding.as_slice(),
        "face": face,
    });
    println!("{out}");
    Ok(())
}

pub fn check_models(ctx: &Context) -> anyhow::Result<()> {
    let paths = ModelPaths::new(&ctx.models_dir);
    let runtime = visage_face::backend::onnxruntime::LIBRARY;
    for file in [models::YUNET, models::SFACE, models::MINIFASNET_V2, models::MINIFASNET_V1SE, runtime] {
        let path = paths.verified(file)?;
        println!("ok {}", path.display());
    }
    match paths.exists(models::MOBILEFACENET) {
        true => println!("ok {}", paths.verified(models::MOBILEFACENET)?.display()),
        false => {
            println!("absent (optional) {}: scripts/models/fetch.sh --mobilefacenet", models::MOBILEFACENET)
        }
    }
    Ok(())
}

/// FAR targets the calibration tries; a target is written only when there are enough impostor
/// pairs to resolve it.
const FAR_TARGETS: [f64; 3] = [1e-2, 1e-3, 1e-4];

pub struct CalibrateArgs<'a> {
    pub pairs: &'a Path,
    pub images: Option<&'a Path>,
    pub liveness_dir: Option<&'a Path>,
    pub liveness_subjects: &'a [String],
    pub apcer_target: f64,
    pub default_far: f64,
    pub rule: visage_calibration::ThresholdRule,
    pub impostor_pairs: usize,
    pub seed: u64,
    pub out: Option<&'a Path>,
    pub cache: &'a crate::evaluation::CacheArgs,
    pub threads: Option<usize>,
}

/// Measures decision thresholds on a development split and writes them (with the liveness
/// threshold) to the calibration file the service reads.
pub fn calibrate(ctx: &Context, args: &CalibrateArgs) -> anyhow::Result<()> {
    use visage_calibration::{
        CalibrationFile, EvaluationSummary, FILE_NAME, FORMAT_VERSION, LivenessCalibration,
        RecognizerCalibration,
    };
    if ctx.fuse_with.is_some() && args.out.is_none() {
        bail!(
            "--fuse-with needs --out: the service does not fuse, so its calibration file must not hold fused thresholds"
        );
    }
    let engines = ctx.scoring_engines()?;
    let root = args
        .images
        .map(Path::to_path_buf)
        .unwrap_or_else(|| args.pairs.parent().unwrap_or(Path::new(".")).into());
    let mut comparisons = crate::dataset::from_pairs_file(args.pairs, &root)?;
    crate::dataset::add_sampled_impostors(&mut comparisons, args.impostor_pairs, args.seed);
    let embedded = embed_with_each(&engines, &comparisons.images, args.cache, args.threads)?;
    let failures = &embedded[0].failures;
    let scores = score_comparisons(&comparisons, &embedded)?.scores;
    let resolution = scores.far_resolution();
    let visage_calibration::Measured { points, unresolved } =
        visage_calibration::measure(&scores, &FAR_TARGETS, args.rule);
    let default = points
        .iter()
        .find(|p| ((p.far - args.default_far) / args.default_far).abs() < 1e-6)
        .with_context(|| {
            format!(
                "FAR {} is not resolvable ({:?} rule) with {} impostor pairs",
                args.default_far,
                args.rule,
                scores.impostor().len()
            )
        })?;
    let at = scores.rates(f64::from(default.threshold));
    let evaluation = EvaluationSummary {
        far_percent: at.far * 100.0,
        frr_percent: at.frr * 100.0,
        eer_percent: scores.eer().rate * 100.0,
    };
    let sampled = match &comparisons.info.impostor_sampling {
        Some(s) => format!(", {} of them sampled among its images with seed {}", s.used, args.seed),
        None => String::new(),
    };
    let dataset = format!(
        "{} ({} genuine, {} impostor pairs{sampled})",
        args.pairs.display(),
        scores.genuine().len(),
        scores.impostor().len()
    );

    let out = args.out.map_or_else(|| ctx.models_dir.join(FILE_NAME), Path::to_path_buf);
    let mut file = match std::fs::read_to_string(&out) {
        Ok(text) => serde_json::from_str::<CalibrationFile>(&text)
            .with_context(|| format!("{} is not a calibration file", out.display()))?,
        Err(_) => CalibrationFile { version: FORMAT_VERSION, recognizers: BTreeMap::new(), liveness: None },
    };
    let numerics = engines[0].numerics();
    let recognizer = visage_calibration::entry_key(ctx.recognizer, numerics);
    file.insert(
        ctx.recognizer,
        RecognizerCalibration {
            dataset,
            backend: numerics.backend,
            precision: numerics.precision,
            points: points.clone(),
            evaluation: Some(evaluation),
        },
    );

    let mut liveness_report = serde_json::Value::Null;
    if let Some(dir) = args.liveness_dir {
        let samples = liveness_samples(dir, args.liveness_subjects)?;
        let (engine, model) = ctx.engine_and_liveness()?;
        let (per_model, liveness_failures) = score_liveness(&samples, args.threads, |bytes| {
            let image = engine.decode(bytes)?;
            let faces = engine.detect(&image)?;
            let face = engine.select(&image, &faces)?;
            Ok(vec![(ctx.liveness.name().to_owned(), f64::from(model.score(&image, face)?.live))])
        })?;
        let scores = per_model.get(ctx.liveness.name()).context("no image gave a liveness score")?;
        // The worst attack type sets the threshold.
        let threshold = worst_type_threshold(scores, args.apcer_target)?;
        let report = visage_stats::pad::evaluate(&scores.bona_fide, &scores.attacks, threshold)
            .map_err(anyhow::Error::msg)?;
        file.liveness = Some(LivenessCalibration {
            model: ctx.liveness,
            dataset: format!("{} subjects {:?}", dir.display(), args.liveness_subjects),
            apcer_target: args.apcer_target,
            threshold: threshold as f32,
        });
        liveness_report =
            json!({ "threshold": threshold, "report": report, "failed_images": liveness_failures });
    }
    std::fs::write(&out, serde_json::to_string_pretty(&file)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    let report = json!({
        "written": out,
        "recognizer": recognizer,
        "points": points,
        "rule": args.rule,
        "unresolved_far_targets": unresolved,
        "far_resolution": resolution,
        "evaluation_at_default": { "far_target": args.default_far, "threshold": default.threshold, "far_percent": evaluation.far_percent, "frr_percent": evaluation.frr_percent, "eer_percent": evaluation.eer_percent },
        "failed_images": failures.len(),
        "liveness": liveness_report,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
