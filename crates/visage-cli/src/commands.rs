use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::json;
use visage_face::{BackendKind, EngineConfig, FaceEngine, FaceSelection, LivenessModel, ModelPaths, models};
use visage_stats::ScoreSet;

pub struct Context {
    pub models_dir: PathBuf,
    pub backend: BackendKind,
    pub selection: FaceSelection,
}

impl Context {
    fn backend(&self, paths: &ModelPaths) -> anyhow::Result<Box<dyn visage_face::InferenceBackend>> {
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(self.backend.create(paths, parallelism)?)
    }

    fn engine(&self) -> anyhow::Result<FaceEngine> {
        let config = EngineConfig { selection: self.selection, ..EngineConfig::default() };
        let paths = ModelPaths::new(&self.models_dir);
        Ok(FaceEngine::load(&paths, self.backend(&paths)?.as_ref(), config)?)
    }
}

/// Scores printed with the precision they carry (f32), not f32-to-f64 noise digits.
fn round6(value: f32) -> f64 {
    (f64::from(value) * 1e6).round() / 1e6
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn detect(ctx: &Context, images: &[PathBuf]) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    let mut failed = 0;
    for path in images {
        let result = read(path).and_then(|bytes| {
            let image = engine.decode(&bytes)?;
            let faces = engine.detect(&image)?;
            let analyzed =
                faces.iter().map(|face| engine.analyze(&image, face)).collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "image": path, "width": image.width(), "height": image.height(), "faces": analyzed }))
        });
        match result {
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

pub fn liveness(ctx: &Context, images: &[PathBuf]) -> anyhow::Result<()> {
    let engine = ctx.engine()?;
    let paths = ModelPaths::new(&ctx.models_dir);
    let model = LivenessModel::load(&paths, ctx.backend(&paths)?.as_ref())?;
    let mut failed = 0;
    for path in images {
        let result = read(path).and_then(|bytes| {
            let image = engine.decode(&bytes)?;
            let faces = engine.detect(&image)?;
            let face = engine.select(&image, &faces)?;
            let score = model.score(&image, face)?;
            Ok(json!({ "image": path, "face": face, "live_score": round6(score.live),
                "attack_class_scores": score.attack_classes.map(round6) }))
        });
        match result {
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
    Ok(())
}

pub fn evaluate(
    ctx: &Context,
    pairs_file: &Path,
    images: Option<&Path>,
    threshold: Option<f32>,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    let root =
        images.map(Path::to_path_buf).unwrap_or_else(|| pairs_file.parent().unwrap_or(Path::new(".")).into());
    let pairs = crate::lfw::read_pairs(pairs_file, &root)?;
    let engine = ctx.engine()?;
    let threshold = threshold.unwrap_or(engine.config().recognizer.default_threshold());
    let mut unique: Vec<&PathBuf> = pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    unique.sort();
    unique.dedup();

    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let next = AtomicUsize::new(0);
    let embeddings = Mutex::new(HashMap::new());
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = unique.get(i) else { break };
                    match read(path).and_then(|bytes| Ok(engine.analyze_bytes(&bytes)?)) {
                        Ok(face) => {
                            embeddings.lock().expect("poisoned").insert((*path).clone(), face.embedding);
                        }
                        Err(err) => {
                            failures.lock().expect("poisoned").push(((*path).clone(), format!("{err:#}")))
                        }
                    }
                    let done = i + 1;
                    if done.is_multiple_of(100) || done == unique.len() {
                        let elapsed = started.elapsed().as_secs_f64();
                        let eta = elapsed / done as f64 * (unique.len() - done) as f64;
                        eprintln!(
                            "embedded {done}/{} images, {elapsed:.0}s elapsed, eta {eta:.0}s",
                            unique.len()
                        );
                    }
                }
            });
        }
    });
    let embeddings = embeddings.into_inner().expect("poisoned");
    let failures = failures.into_inner().expect("poisoned");

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
    let at = scores.rates(f64::from(threshold));
    let eer = scores.eer();
    let report = json!({
        "pairs_file": pairs_file,
        "recognizer": engine.config().recognizer,
        "pairs": { "genuine": scores.genuine().len(), "impostor": scores.impostor().len(), "with_failed_image": failed_pairs },
        "images": { "embedded": embeddings.len(), "failed": failures.iter().map(|(p, e)| json!({"image": p, "error": e})).collect::<Vec<_>>() },
        "threshold": round6(threshold),
        "accuracy": scores.accuracy(f64::from(threshold)),
        "far": at.far,
        "frr": at.frr,
        "eer": eer.rate,
        "eer_threshold": eer.threshold,
        "best_accuracy_threshold": scores.best_accuracy_threshold(),
        "threshold_at_far_1e-3": scores.threshold_for_far(1e-3),
        "far_resolution": scores.far_resolution(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
