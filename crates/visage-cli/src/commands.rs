use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::json;
use visage_face::{
    BackendKind, DecodeLimits, EngineConfig, FaceEngine, FaceSelection, LivenessModel, ModelPaths,
    RecognizerKind, models,
};
use visage_stats::ScoreSet;

pub struct Context {
    pub models_dir: PathBuf,
    pub backend: BackendKind,
    pub recognizer: RecognizerKind,
    pub decode: DecodeLimits,
    pub selection: FaceSelection,
}

impl Context {
    fn engine(&self) -> anyhow::Result<FaceEngine> {
        Ok(self.load(false)?.0)
    }

    /// The face engine and the liveness models, on one backend.
    fn engine_and_liveness(&self) -> anyhow::Result<(FaceEngine, LivenessModel)> {
        let (engine, liveness) = self.load(true)?;
        Ok((engine, liveness.expect("requested")))
    }

    fn load(&self, with_liveness: bool) -> anyhow::Result<(FaceEngine, Option<LivenessModel>)> {
        let config = EngineConfig {
            selection: self.selection,
            recognizer: self.recognizer,
            decode: self.decode,
            ..EngineConfig::default()
        };
        let paths = ModelPaths::new(&self.models_dir);
        let backend = self.backend.create(&paths, thread_count(None))?;
        let engine = FaceEngine::load(&paths, backend.as_ref(), config)?;
        let liveness = with_liveness.then(|| LivenessModel::load(&paths, backend.as_ref())).transpose()?;
        Ok((engine, liveness))
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

pub fn liveness(ctx: &Context, images: &[PathBuf], threshold: f32) -> anyhow::Result<()> {
    let (engine, model) = ctx.engine_and_liveness()?;
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
            println!("absent (optional) {}: scripts/fetch-models.sh --mobilefacenet", models::MOBILEFACENET)
        }
    }
    Ok(())
}

/// Runs `work` over `items` on `threads` threads, printing progress with an ETA to stderr.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    what: &str,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(items.len()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    results.lock().expect("poisoned").push((i, result));
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(100) || finished == items.len() {
                        let elapsed = started.elapsed().as_secs_f64();
                        let eta = elapsed / finished as f64 * (items.len() - finished) as f64;
                        eprintln!("{what} {finished}/{}, {elapsed:.0}s elapsed, eta {eta:.0}s", items.len());
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().expect("poisoned");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn thread_count(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// Similarity scores of every pair of a pairs file, and what failed on the way.
struct PairScores {
    scores: ScoreSet,
    embedded: usize,
    failures: Vec<(PathBuf, String)>,
    failed_pairs: usize,
}

fn score_pairs(
    engine: &FaceEngine,
    pairs_file: &Path,
    images: Option<&Path>,
    threads: Option<usize>,
) -> anyhow::Result<PairScores> {
    let root =
        images.map(Path::to_path_buf).unwrap_or_else(|| pairs_file.parent().unwrap_or(Path::new(".")).into());
    let pairs = crate::lfw::read_pairs(pairs_file, &root)?;
    let mut unique: Vec<&PathBuf> = pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    unique.sort();
    unique.dedup();

    let outcomes = parallel_map(&unique, thread_count(threads), "embedded", |path| {
        read(path).and_then(|bytes| Ok(engine.analyze_bytes(&bytes)?.embedding))
    });
    let mut embeddings = HashMap::new();
    let mut failures = Vec::new();
    for (path, outcome) in unique.iter().zip(outcomes) {
        match outcome {
            Ok(embedding) => {
                embeddings.insert((*path).clone(), embedding);
            }
            Err(err) => failures.push(((*path).clone(), format!("{err:#}"))),
        }
    }

    // A pair with an image that failed counts as a non-match (score -1): a rejection for a
    // genuine pair, a correct refusal for an impostor pair.
    let (mut genuine, mut impostor, mut failed_pairs) = (Vec::new(), Vec::new(), 0);
    for pair in &pairs {
        let score = match (embeddings.get(&pair.a), embeddings.get(&pair.b)) {
            (Some(a), Some(b)) => f64::from(a.cosine(b)),
            _ => {
                failed_pairs += 1;
                -1.0
            }
        };
        if pair.genuine { genuine.push(score) } else { impostor.push(score) }
    }
    let scores = ScoreSet::new(genuine, impostor).map_err(anyhow::Error::msg)?;
    Ok(PairScores { scores, embedded: embeddings.len(), failures, failed_pairs })
}

pub fn evaluate(
    ctx: &Context,
    pairs_file: &Path,
    images: Option<&Path>,
    threshold: Option<f32>,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    let threshold = threshold.unwrap_or(engine.config().recognizer.default_threshold());
    let started = Instant::now();
    let PairScores { scores, embedded, failures, failed_pairs } =
        score_pairs(&engine, pairs_file, images, threads)?;
    let at = scores.rates(f64::from(threshold));
    let eer = scores.eer();
    let (far_ci, frr_ci) = scores.confidence_95(f64::from(threshold));
    let tar_at_far: Vec<_> = [1e-2, 1e-3, 1e-4].into_iter().map(|t| scores.tar_at_far(t)).collect();
    let report = json!({
        "pairs_file": pairs_file,
        "recognizer": engine.config().recognizer,
        "pairs": { "genuine": scores.genuine().len(), "impostor": scores.impostor().len(), "with_failed_image": failed_pairs },
        "images": { "embedded": embedded, "failed": failures.iter().map(|(p, e)| json!({"image": p, "error": e})).collect::<Vec<_>>() },
        "threshold": round6(threshold),
        "accuracy": scores.accuracy(f64::from(threshold)),
        "far": at.far,
        "frr": at.frr,
        "eer": eer.rate,
        "eer_threshold": eer.threshold,
        "best_accuracy_threshold": scores.best_accuracy_threshold(),
        "far_95ci": far_ci,
        "frr_95ci": frr_ci,
        "tar_at_far": tar_at_far,
        "far_resolution": scores.far_resolution(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Liveness scores of bona fide and attack images, per attack type, and the failures.
type LivenessScores = (Vec<f64>, BTreeMap<String, Vec<f64>>, Vec<serde_json::Value>);

/// Scores `DIR/real/<subject>/*` (bona fide) and `DIR/attack/<type>/<subject>/*`.
fn liveness_scores(
    ctx: &Context,
    dir: &Path,
    subjects: &[String],
    threads: Option<usize>,
) -> anyhow::Result<LivenessScores> {
    let mut samples: Vec<(Option<String>, PathBuf)> = Vec::new();
    let mut add = |kind: Option<String>, root: PathBuf| -> anyhow::Result<()> {
        for subject in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
            let subject = subject?.path();
            let name = subject.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !subject.is_dir() || (!subjects.is_empty() && !subjects.contains(&name)) {
                continue;
            }
            for file in std::fs::read_dir(&subject)? {
                samples.push((kind.clone(), file?.path()));
            }
        }
        Ok(())
    };
    add(None, dir.join("real"))?;
    let attack_root = dir.join("attack");
    for kind in
        std::fs::read_dir(&attack_root).with_context(|| format!("reading {}", attack_root.display()))?
    {
        let kind = kind?.path();
        let name = kind.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        add(Some(name), kind)?;
    }
    samples.sort();
    if samples.is_empty() {
        bail!("no images under {} for the chosen subjects", dir.display());
    }

    let (engine, model) = ctx.engine_and_liveness()?;
    let scores = parallel_map(&samples, thread_count(threads), "scored", |(_, path)| {
        read(path).and_then(|bytes| {
            let image = engine.decode(&bytes)?;
            let faces = engine.detect(&image)?;
            let face = engine.select(&image, &faces)?;
            Ok(f64::from(model.score(&image, face)?.live))
        })
    });
    let mut bona_fide = Vec::new();
    let mut attacks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failures = Vec::new();
    for ((kind, path), score) in samples.iter().zip(scores) {
        match (score, kind) {
            (Ok(score), None) => bona_fide.push(score),
            (Ok(score), Some(kind)) => attacks.entry(kind.clone()).or_default().push(score),
            (Err(err), _) => failures.push(json!({ "image": path, "error": format!("{err:#}") })),
        }
    }
    Ok((bona_fide, attacks, failures))
}

/// Liveness error rates over `DIR/real/<subject>/*` and `DIR/attack/<type>/<subject>/*`.
pub fn evaluate_liveness(
    ctx: &Context,
    dir: &Path,
    subjects: &[String],
    threshold: f32,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (bona_fide, attacks, failures) = liveness_scores(ctx, dir, subjects, threads)?;
    let report = visage_stats::pad::evaluate(&bona_fide, &attacks, f64::from(threshold))
        .map_err(anyhow::Error::msg)?;
    let out = json!({
        "dir": dir,
        "subjects": subjects,
        "models": ["minifasnet_v2_2.7", "minifasnet_v1se_4.0"],
        "report": report,
        "failed_images": failures,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
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
    pub out: Option<&'a Path>,
    pub threads: Option<usize>,
}

/// Measures decision thresholds on a development split and writes them (with the liveness
/// threshold) to the calibration file the service reads.
pub fn calibrate(ctx: &Context, args: &CalibrateArgs) -> anyhow::Result<()> {
    use visage_server::calibration::{
        CalibrationFile, EvaluationSummary, FILE_NAME, FORMAT_VERSION, LivenessCalibration, OperatingPoint,
        RecognizerCalibration,
    };
    let engine = ctx.engine()?;
    let PairScores { scores, failures, .. } = score_pairs(&engine, args.pairs, args.images, args.threads)?;
    let resolution = scores.far_resolution();
    let mut points = Vec::new();
    let mut unresolved = Vec::new();
    for far in FAR_TARGETS {
        if resolution <= far {
            points.push(OperatingPoint { far, threshold: scores.threshold_for_far(far) as f32 });
        } else {
            unresolved.push(far);
        }
    }
    let default = points
        .iter()
        .find(|p| ((p.far - args.default_far) / args.default_far).abs() < 1e-6)
        .with_context(|| {
            format!(
                "FAR {} is not resolvable with {} impostor pairs",
                args.default_far,
                scores.impostor().len()
            )
        })?;
    let at = scores.rates(f64::from(default.threshold));
    let evaluation = EvaluationSummary {
        far_percent: at.far * 100.0,
        frr_percent: at.frr * 100.0,
        eer_percent: scores.eer().rate * 100.0,
    };
    let dataset = format!(
        "{} ({} genuine, {} impostor pairs)",
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
    let recognizer = serde_json::to_value(ctx.recognizer)?.as_str().unwrap_or_default().to_owned();
    file.recognizers.insert(
        recognizer.clone(),
        RecognizerCalibration { dataset, points: points.clone(), evaluation: Some(evaluation) },
    );

    let mut liveness_report = serde_json::Value::Null;
    if let Some(dir) = args.liveness_dir {
        let (bona_fide, attacks, liveness_failures) =
            liveness_scores(ctx, dir, args.liveness_subjects, args.threads)?;
        // The worst attack type sets the threshold.
        let threshold = attacks
            .values()
            .map(|a| {
                ScoreSet::new(bona_fide.clone(), a.clone()).map(|s| s.threshold_for_far(args.apcer_target))
            })
            .collect::<Result<Vec<f64>, _>>()
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .fold(f64::MIN, f64::max);
        let report =
            visage_stats::pad::evaluate(&bona_fide, &attacks, threshold).map_err(anyhow::Error::msg)?;
        file.liveness = Some(LivenessCalibration {
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
        "unresolved_far_targets": unresolved,
        "far_resolution": resolution,
        "evaluation_at_default": { "far_target": args.default_far, "threshold": default.threshold, "far_percent": evaluation.far_percent, "frr_percent": evaluation.frr_percent, "eer_percent": evaluation.eer_percent },
        "failed_images": failures.len(),
        "liveness": liveness_report,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
