//! Scoring labelled data: embeds every image once (in parallel, through the on-disk cache),
//! then scores each comparison; scores liveness over real and attack folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};
use serde::Serialize;
use visage_face::{Embedding, FaceEngine};
use visage_stats::ScoreSet;

use crate::cache::{self, EmbeddingCache, Outcome};
use crate::dataset::Comparisons;
use crate::progress::Progress;

/// Runs `work` over `items` on `threads` threads, keeping the input order.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    what: &'static str,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let progress = Progress::new(what, items.len());
    let results = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    results.lock().expect("poisoned").push((i, result));
                    progress.tick();
                }
            });
        }
    });
    let mut results = results.into_inner().expect("poisoned");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

pub fn thread_count(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// An image the pipeline refused, with the stable error code.
#[derive(Debug, Clone, Serialize)]
pub struct FailedImage {
    pub image: PathBuf,
    pub code: String,
    pub error: String,
}

/// Per image (same order as the input): its embedding, or `None` when it failed.
pub struct Embedded {
    pub embeddings: Vec<Option<Embedding>>,
    pub failures: Vec<FailedImage>,
    pub computed: usize,
    pub from_cache: usize,
}

/// Where embeddings are cached, from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Embedding cache folder [default: $XDG_CACHE_HOME/visage/embeddings or
    /// ~/.cache/visage/embeddings].
    #[arg(long, env = "VISAGE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Embed every image afresh and cache nothing.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache for this engine, or `None` when disabled or no home folder is known.
    pub fn open(&self, engine: &FaceEngine) -> anyhow::Result<Option<EmbeddingCache>> {
        if self.no_cache {
            return Ok(None);
        }
        let Some(root) = self.cache_dir.clone().or_else(cache::default_root) else { return Ok(None) };
        // The precision too: bf16 embeddings differ from f32 ones.
        let numerics = engine.numerics();
        let fingerprint = format!(
            "visage {} backend {:?} precision {} engine {}",
            env!("CARGO_PKG_VERSION"),
            numerics.backend,
            numerics.precision.as_str(),
            serde_json::to_string(engine.config())?
        );
        EmbeddingCache::open(&root, &fingerprint).map(Some)
    }
}

enum Work {
    Cached(Outcome),
    Computed(Outcome),
}

/// One batch of [`embed_images`]: each image from the cache when it is there, the others
/// analysed together.
fn embed_batch(
    engine: &FaceEngine,
    paths: &[PathBuf],
    cache: Option<&EmbeddingCache>,
) -> anyhow::Result<Vec<Work>> {
    let mut work: Vec<Option<Work>> = Vec::with_capacity(paths.len());
    // Images still to analyse: (position in the batch, bytes, content hash).
    let mut pending = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match std::fs::read(path) {
            Err(err) => work.push(Some(Work::Computed(Outcome::Failed {
                code: "unreadable".into(),
                message: err.to_string(),
            }))),
            Ok(bytes) => {
                let hash = cache::content_hash(&bytes);
                match cache.and_then(|c| c.get(&hash)) {
                    Some(hit) => work.push(Some(Work::Cached(hit))),
                    None => {
                        work.push(None);
                        pending.push((i, bytes, hash));
                    }
                }
            }
        }
    }
    let inputs: Vec<&[u8]> = pending.iter().map(|(_, bytes, _)| bytes.as_slice()).collect();
    let analysed = match inputs.is_empty() {
        true => Vec::new(),
        false => engine
            .analyze_many_bytes(&inputs)
            .with_context(|| format!("{} and the rest of its batch", paths[pending[0].0].display()))?,
    };
    for ((i, _, hash), result) in pending.into_iter().zip(analysed) {
        let outcome = match result {
            Ok(face) => Outcome::Embedding(face.embedding.as_slice().to_vec()),
            Err(err) if err.is_client_error() => {
                Outcome::Failed { code: err.code().as_str().into(), message: err.to_string() }
            }
            Err(err) => return Err(err).with_context(|| paths[i].display().to_string()),
        };
        if let Some(cache) = cache {
            cache.put(&hash, &outcome)?;
        }
        work[i] = Some(Work::Computed(outcome));
    }
    Ok(work.into_iter().map(|w| w.expect("every image has its work")).collect())
}

/// Embeds each image once, [`FaceEngine::batch_size`] images per inference (batches of 4 on
/// OpenVINO: a quarter less time per SFace face in bf16, docs/performance.md#batches). Images
/// the pipeline refuses (no face, undecodable) are failures to report; a model or inference
/// failure stops the run, since every figure would be wrong.
pub fn embed_images(
    engine: &FaceEngine,
    images: &[PathBuf],
    cache: Option<&EmbeddingCache>,
    threads: Option<usize>,
) -> anyhow::Result<Embedded> {
    let batches: Vec<&[PathBuf]> = images.chunks(engine.batch_size()).collect();
    let what = if engine.batch_size() > 1 { "embedding (batches)" } else { "embedding" };
    let per_batch =
        parallel_map(&batches, thread_count(threads), what, |paths| embed_batch(engine, paths, cache));
    let mut outcomes = Vec::with_capacity(images.len());
    for batch in per_batch {
        outcomes.extend(batch?);
    }
    let mut embedded = Embedded {
        embeddings: Vec::with_capacity(images.len()),
        failures: Vec::new(),
        computed: 0,
        from_cache: 0,
    };
    for (path, work) in images.iter().zip(outcomes) {
        let outcome = match work {
            Work::Cached(outcome) => {
                embedded.from_cache += 1;
                outcome
            }
            Work::Computed(outcome) => {
                embedded.computed += 1;
                outcome
            }
        };
        match outcome {
            Outcome::Embedding(values) => {
                embedded.embeddings.push(Some(Embedding::parse(values).map_err(anyhow::Error::msg)?))
            }
            Outcome::Failed { code, message } => {
                embedded.embeddings.push(None);
                embedded.failures.push(FailedImage { image: path.clone(), code, error: message });
            }
        }
    }
    Ok(embedded)
}

/// Embeds every image with each engine (`Context::scoring_engines`), each through its own cache.
pub fn embed_with_each(
    engines: &[FaceEngine],
    images: &[PathBuf],
    cache: &CacheArgs,
    threads: Option<usize>,
) -> anyhow::Result<Vec<Embedded>> {
    engines
        .iter()
        .map(|engine| {
            let cache = cache.open(engine)?;
            embed_images(engine, images, cache.as_ref(), threads)
        })
        .collect()
}

/// How a pair with a failed image is scored, as the reports state it.
pub const FAILURE_POLICY: &str = "a pair with an image that failed scores -1 (a non-match): a false reject when \
     genuine, a correct refusal when impostor; failures are never dropped, so they cannot flatter the rates";

/// The scores of every comparison, overall and per fold.
pub struct PairScores {
    pub scores: ScoreSet,
    /// Genuine and impostor scores of each fold: the dataset's own protocol, without
    /// impostor pairs sampled on top of a pairs file.
    pub folds: Vec<(Vec<f64>, Vec<f64>)>,
    pub failed_pairs: usize,
}

impl PairScores {
    /// The pairs of the dataset's protocol (every fold together).
    pub fn protocol(&self) -> anyhow::Result<ScoreSet> {
        ScoreSet::new(
            self.folds.iter().flat_map(|f| f.0.iter().copied()).collect(),
            self.folds.iter().flat_map(|f| f.1.iter().copied()).collect(),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// Scores each comparison: the cosine of its two embeddings, or with several recognizers
/// (`--fuse-with`) the mean of their cosines (the sum rule of score fusion).
pub fn score_comparisons(comparisons: &Comparisons, embedded: &[Embedded]) -> anyhow::Result<PairScores> {
    let mut folds = vec![(Vec::new(), Vec::new()); comparisons.fold_count()];
    let (mut genuine, mut impostor, mut failed_pairs) = (Vec::new(), Vec::new(), 0);
    for pair in &comparisons.pairs {
        let cosines: Option<Vec<f64>> = embedded
            .iter()
            .map(|e| match (&e.embeddings[pair.a], &e.embeddings[pair.b]) {
                (Some(a), Some(b)) => Some(f64::from(a.cosine(b))),
                _ => None,
            })
            .collect();
        let score = match cosines {
            Some(cosines) if !cosines.is_empty() => cosines.iter().sum::<f64>() / cosines.len() as f64,
            _ => {
                failed_pairs += 1;
                -1.0
            }
        };
        let (all, in_fold) = match pair.fold {
            Some(f) if pair.genuine => (&mut genuine, Some(&mut folds[f].0)),
            Some(f) => (&mut impostor, Some(&mut folds[f].1)),
            None if pair.genuine => (&mut genuine, None),
            None => (&mut impostor, None),
        };
        all.push(score);
        if let Some(fold) = in_fold {
            fold.push(score);
        }
    }
    let scores = ScoreSet::new(genuine, impostor).map_err(anyhow::Error::msg)?;
    Ok(PairScores { scores, folds, failed_pairs })
}

/// Bona fide scores and attack scores per attack type, of one liveness model.
#[derive(Debug, Default)]
pub struct LivenessScores {
    pub bona_fide: Vec<f64>,
    pub attacks: BTreeMap<String, Vec<f64>>,
}

/// One presentation: `None` for bona fide, else the attack type.
type Sample = (Option<String>, PathBuf);

/// Lists `DIR/real/<subject>/*` (bona fide) and `DIR/attack/<type>/<subject>/*`.
pub fn liveness_samples(dir: &Path, subjects: &[String]) -> anyhow::Result<Vec<Sample>> {
    let mut samples: Vec<Sample> = Vec::new();
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
    Ok(samples)
}

/// Scores every sample with `score`, which gives each liveness model's live probability for
/// the image's face. Returns the scores per model and the images that failed (no face,
/// undecodable); a model or inference failure stops the run.
pub fn score_liveness(
    samples: &[Sample],
    threads: Option<usize>,
    score: impl Fn(&[u8]) -> Result<Vec<(String, f64)>, visage_face::FaceError> + Sync,
) -> anyhow::Result<(BTreeMap<String, LivenessScores>, Vec<FailedImage>)> {
    let outcomes = parallel_map(samples, thread_count(threads), "liveness", |(_, path)| {
        std::fs::read(path)
            .map_err(|e| ("unreadable".to_string(), e.to_string()))
            .and_then(|bytes| score(&bytes).map_err(|e| (e.code().as_str().to_string(), e.to_string())))
    });
    let mut per_model: BTreeMap<String, LivenessScores> = BTreeMap::new();
    let mut failures = Vec::new();
    for ((kind, path), outcome) in samples.iter().zip(outcomes) {
        match outcome {
            Ok(scores) => {
                for (model, score) in scores {
                    let entry = per_model.entry(model).or_default();
                    match kind {
                        None => entry.bona_fide.push(score),
                        Some(kind) => entry.attacks.entry(kind.clone()).or_default().push(score),
                    }
                }
            }
            Err((code, error)) if code == "model_unavailable" || code == "inference_failed" => {
                bail!("{}: {error}", path.display())
            }
            Err((code, error)) => failures.push(FailedImage { image: path.clone(), code, error }),
        }
    }
    Ok((per_model, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Comparison, DatasetInfo};

    fn embedded(vectors: &[Option<[f32; 2]>]) -> Embedded {
        Embedded {
            embeddings: vectors.iter().map(|v| v.map(|v| Embedding::parse(v.to_vec()).unwrap())).collect(),
            failures: Vec::new(),
            computed: vectors.len(),
            from_cache: 0,
        }
    }

    #[test]
    fn fused_scores_are_the_mean_cosine_and_a_failed_image_fails_the_pair_in_any_recognizer() {
        let pair = |a, b, genuine| Comparison { a, b, genuine, fold: None };
        let comparisons = Comparisons {
            images: vec![PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")],
            pairs: vec![pair(0, 1, true), pair(0, 2, false)],
            info: DatasetInfo {
                kind: "lfw_pairs",
                source: PathBuf::from("pairs.txt"),
                images: 3,
                identities: None,
                folds: "file",
                impostor_sampling: None,
            },
        };
        // First recognizer: a·b = 1, a·c = 0. Second: a·b = 0, c failed.
        let first = embedded(&[Some([1.0, 0.0]), Some([1.0, 0.0]), Some([0.0, 1.0])]);
        let second = embedded(&[Some([1.0, 0.0]), Some([0.0, 1.0]), None]);
        let alone = score_comparisons(&comparisons, std::slice::from_ref(&first)).unwrap();
        assert_eq!((alone.scores.genuine(), alone.scores.impostor()), (&[1.0][..], &[0.0][..]));
        let fused = score_comparisons(&comparisons, &[first, second]).unwrap();
        assert_eq!((fused.scores.genuine(), fused.scores.impostor()), (&[0.5][..], &[-1.0][..]));
        assert_eq!(fused.failed_pairs, 1);
    }
}
