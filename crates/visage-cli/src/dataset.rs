//! Labelled comparison sets for evaluation: an LFW-style pairs file, or a directory per
//! identity from which every genuine pair and a seeded sample of impostor pairs are formed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

/// Cross-validation folds, as LFW View 2 uses them.
pub const FOLDS: usize = 10;

/// One comparison: indexes into [`Comparisons::images`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub a: usize,
    pub b: usize,
    pub genuine: bool,
    /// The cross-validation fold; `None` for impostor pairs sampled on top of a pairs file,
    /// which sharpen the FAR estimates but stay out of the file's accuracy protocol.
    pub fold: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// `lfw_pairs` or `identity_directories`.
    pub kind: &'static str,
    pub source: PathBuf,
    pub images: usize,
    /// Identities with at least one image (directory layout only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identities: Option<usize>,
    /// `file` (the pairs file's own folds, `pairs.txt` style) or `stratified` (genuine and
    /// impostor pairs dealt round-robin into the folds, in file or sampling order).
    pub folds: &'static str,
    /// How impostor pairs were sampled: from the identity folders, or added to a pairs
    /// file's own pairs from its images (`--impostor-pairs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impostor_sampling: Option<ImpostorSampling>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImpostorSampling {
    /// Every cross-identity pair there is.
    pub available: u64,
    pub used: usize,
    /// `None` when every pair was used; the sampler's seed otherwise.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Comparisons {
    /// Each image once, sorted: it is embedded once however many pairs it is in.
    pub images: Vec<PathBuf>,
    pub pairs: Vec<Comparison>,
    pub info: DatasetInfo,
}

impl Comparisons {
    /// How many folds the pairs fall in.
    pub fn fold_count(&self) -> usize {
        self.pairs.iter().filter_map(|p| p.fold).map(|f| f + 1).max().unwrap_or(0)
    }
}

/// Deals pairs round-robin into folds, genuine and impostor separately, so every fold has
/// both kinds in the dataset's proportions: [`FOLDS`] folds, fewer when there are fewer
/// pairs of a kind (one fold means no cross-validation).
fn stratify(pairs: &mut [Comparison]) {
    let genuine_total = pairs.iter().filter(|p| p.genuine).count();
    let folds = FOLDS.min(genuine_total).min(pairs.len() - genuine_total).max(1);
    let (mut genuine, mut impostor) = (0, 0);
    for pair in pairs {
        let counter = if pair.genuine { &mut genuine } else { &mut impostor };
        pair.fold = Some(*counter % folds);
        *counter += 1;
    }
}

/// Interns paths so each image gets one index.
#[derive(Default)]
struct ImageTable {
    index: BTreeMap<PathBuf, usize>,
}

impl ImageTable {
    fn id(&mut self, path: PathBuf) -> usize {
        let next = self.index.len();
        *self.index.entry(path).or_insert(next)
    }

    /// The sorted image list, with pair indexes remapped to it.
    fn finish(self, pairs: &mut [Comparison]) -> Vec<PathBuf> {
        let mut sorted: Vec<(PathBuf, usize)> = self.index.into_iter().collect();
        sorted.sort();
        let mut remap = vec![0; sorted.len()];
        for (new, (_, old)) in sorted.iter().enumerate() {
            remap[*old] = new;
        }
        for pair in pairs {
            pair.a = remap[pair.a];
            pair.b = remap[pair.b];
        }
        sorted.into_iter().map(|(p, _)| p).collect()
    }
}

/// An LFW pairs file. A `pairs.txt`-style header (`10 300`: folds, pairs of each kind per
/// fold) keeps the file's own folds; a single count (View 1) is stratified.
pub fn from_pairs_file(file: &Path, root: &Path) -> anyhow::Result<Comparisons> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pairs =
        crate::lfw::parse_pairs(&text, root).with_context(|| format!("parsing {}", file.display()))?;
    let header: Vec<usize> =
        text.lines().next().unwrap_or_default().split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let per_fold = match header.as_slice() {
        [folds, per_kind] if *folds >= 2 && pairs.len() == folds * per_kind * 2 => Some(per_kind * 2),
        _ => None,
    };
    let mut table = ImageTable::default();
    let mut comparisons: Vec<Comparison> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, p)| Comparison {
            a: table.id(p.a),
            b: table.id(p.b),
            genuine: p.genuine,
            fold: per_fold.map(|n| i / n),
        })
        .collect();
    if per_fold.is_none() {
        stratify(&mut comparisons);
    }
    let images = table.finish(&mut comparisons);
    Ok(Comparisons {
        info: DatasetInfo {
            kind: "lfw_pairs",
            source: file.to_path_buf(),
            images: images.len(),
            identities: None,
            folds: if per_fold.is_some() { "file" } else { "stratified" },
            impostor_sampling: None,
        },
        images,
        pairs: comparisons,
    })
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// SplitMix64: a tiny, well-mixed generator whose sequence for a seed never changes between
/// versions, so a seeded sample can be reproduced years later.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (rejection sampling, no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

struct ImpostorSample {
    pairs: Vec<(usize, usize)>,
    available: u64,
    sampled: bool,
}

impl ImpostorSample {
    fn info(&self, seed: u64) -> ImpostorSampling {
        ImpostorSampling {
            available: self.available,
            used: self.pairs.len(),
            seed: self.sampled.then_some(seed),
        }
    }
}

/// Cross-identity pairs over `images` (identity, image index): all of them when there are at
/// most `limit` (less those in `exclude`), else `limit` distinct ones drawn by a generator
/// seeded with `seed`. `exclude` holds (low, high) index pairs already in the set.
fn sample_impostors(
    images: &[(usize, usize)],
    limit: usize,
    seed: u64,
    exclude: &HashSet<(usize, usize)>,
) -> ImpostorSample {
    let mut per_identity: BTreeMap<usize, u64> = BTreeMap::new();
    for (who, _) in images {
        *per_identity.entry(*who).or_default() += 1;
    }
    let n = images.len() as u64;
    let same: u64 = per_identity.values().map(|k| k * (k - 1) / 2).sum();
    let available = (n * n.saturating_sub(1) / 2 - same).saturating_sub(exclude.len() as u64);
    let key = |i: usize, j: usize| {
        let (a, b) = (images[i].1, images[j].1);
        (a.min(b), a.max(b))
    };
    let mut pairs = Vec::new();
    if available <= limit as u64 {
        for i in 0..images.len() {
            for j in i + 1..images.len() {
                if images[i].0 != images[j].0 && !exclude.contains(&key(i, j)) {
                    pairs.push((images[i].1, images[j].1));
                }
            }
        }
        return ImpostorSample { pairs, available, sampled: false };
    }
    let mut rng = SplitMix64(seed);
    let mut seen = HashSet::with_capacity(limit);
    while pairs.len() < limit {
        let (i, j) = (rng.below(n) as usize, rng.below(n) as usize);
        if images[i].0 == images[j].0 || exclude.contains(&key(i, j)) || !seen.insert(key(i, j)) {
            continue;
        }
        pairs.push((images[i].1, images[j].1));
    }
    ImpostorSample { pairs, available, sampled: true }
}

/// Adds up to `limit` impostor pairs formed among a pairs file's own images (identity = the
/// image's folder), outside the file's folds: 500 impostor pairs cannot resolve a FAR of
/// 0.1%, the million-odd cross-identity pairs of the same images can.
pub fn add_sampled_impostors(set: &mut Comparisons, limit: usize, seed: u64) {
    if limit == 0 {
        return;
    }
    let mut identities: BTreeMap<&Path, usize> = BTreeMap::new();
    let images: Vec<(usize, usize)> = set
        .images
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let next = identities.len();
            (*identities.entry(path.parent().unwrap_or(Path::new(""))).or_insert(next), i)
        })
        .collect();
    // Genuine pairs are same-identity and never drawn; only the file's impostors are excluded.
    let exclude: HashSet<(usize, usize)> =
        set.pairs.iter().filter(|p| !p.genuine).map(|p| (p.a.min(p.b), p.a.max(p.b))).collect();
    let sample = sample_impostors(&images, limit, seed, &exclude);
    set.pairs.extend(sample.pairs.iter().map(|&(a, b)| Comparison { a, b, genuine: false, fold: None }));
    set.info.impostor_sampling = Some(sample.info(seed));
}

/// `root/<identity>/<image>`: every pair of images of one identity is genuine; impostor pairs
/// are all cross-identity pairs when there are at most `impostor_limit`, else that many drawn
/// without repetition by a generator seeded with `seed`.
pub fn from_identity_dirs(root: &Path, impostor_limit: usize, seed: u64) -> anyhow::Result<Comparisons> {
    let mut identities: Vec<Vec<PathBuf>> = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for dir in entries.into_iter().filter(|p| p.is_dir()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        if !files.is_empty() {
            identities.push(files);
        }
    }
    if identities.len() < 2 {
        bail!("{} needs at least two identity folders holding images", root.display());
    }

    let mut table = ImageTable::default();
    let owner: Vec<(usize, usize)> = identities
        .iter()
        .enumerate()
        .flat_map(|(who, files)| files.iter().map(move |f| (who, f)))
        .map(|(who, f)| (who, table.id(f.clone())))
        .collect();
    let mut pairs = Vec::new();
    let mut start = 0;
    for files in &identities {
        for i in start..start + files.len() {
            for j in i + 1..start + files.len() {
                pairs.push(Comparison { a: owner[i].1, b: owner[j].1, genuine: true, fold: None });
            }
        }
        start += files.len();
    }
    if pairs.is_empty() {
        bail!("no identity in {} has two images: there is no genuine pair", root.display());
    }

    let sample = sample_impostors(&owner, impostor_limit, seed, &HashSet::new());
    pairs.extend(sample.pairs.iter().map(|&(a, b)| Comparison { a, b, genuine: false, fold: None }));
    stratify(&mut pairs);
    let images = table.finish(&mut pairs);
    Ok(Comparisons {
        info: DatasetInfo {
            kind: "identity_directories",
            source: root.to_path_buf(),
            images: images.len(),
            identities: Some(identities.len()),
            folds: "stratified",
            impostor_sampling: Some(sample.info(seed)),
        },
        images,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_tree(root: &Path, layout: &[(&str, usize)]) {
        for (name, count) in layout {
            std::fs::create_dir_all(root.join(name)).unwrap();
            for i in 0..*count {
                std::fs::write(root.join(name).join(format!("{i}.jpg")), b"x").unwrap();
            }
        }
        std::fs::write(root.join("README.txt"), b"not an identity").unwrap();
        std::fs::write(root.join("a").join("notes.txt"), b"not an image").unwrap();
    }

    #[test]
    fn identity_dirs_give_all_genuine_and_all_impostor_pairs_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        touch_tree(dir.path(), &[("a", 3), ("b", 2), ("c", 1)]);
        let set = from_identity_dirs(dir.path(), 1_000, 7).unwrap();
        assert_eq!(set.images.len(), 6);
        // Genuine: C(3,2) + C(2,2) = 4. Impostor: C(6,2) - 4 = 11.
        assert_eq!(set.pairs.iter().filter(|p| p.genuine).count(), 4);
        assert_eq!(set.pairs.iter().filter(|p| !p.genuine).count(), 11);
        let sampling = set.info.impostor_sampling.as_ref().unwrap();
        assert_eq!((sampling.available, sampling.used, sampling.seed), (11, 11, None));
        for p in &set.pairs {
            let same = set.images[p.a].parent() == set.images[p.b].parent();
            assert_eq!(same, p.genuine, "{p:?}");
        }
    }

    #[test]
    fn impostor_sampling_is_seeded_distinct_and_cross_identity() {
        let dir = tempfile::tempdir().unwrap();
        touch_tree(dir.path(), &[("a", 10), ("b", 10), ("c", 10), ("d", 10)]);
        let first = from_identity_dirs(dir.path(), 100, 42).unwrap();
        let again = from_identity_dirs(dir.path(), 100, 42).unwrap();
        let other = from_identity_dirs(dir.path(), 100, 43).unwrap();
        let impostors = |s: &Comparisons| -> Vec<(usize, usize)> {
            s.pairs.iter().filter(|p| !p.genuine).map(|p| (p.a.min(p.b), p.a.max(p.b))).collect()
        };
        assert_eq!(impostors(&first), impostors(&again));
        assert_ne!(impostors(&first), impostors(&other));
        assert_eq!(impostors(&first).len(), 100);
        assert_eq!(impostors(&first).into_iter().collect::<HashSet<_>>().len(), 100);
        assert_eq!(first.info.impostor_sampling.as_ref().unwrap().available, 600);
        for p in first.pairs.iter().filter(|p| !p.genuine) {
            assert_ne!(first.images[p.a].parent(), first.images[p.b].parent());
        }
        // Stratified folds: every fold holds both kinds.
        for fold in 0..FOLDS {
            assert!(first.pairs.iter().any(|p| p.fold == Some(fold) && p.genuine));
            assert!(first.pairs.iter().any(|p| p.fold == Some(fold) && !p.genuine));
        }
    }

    #[test]
    fn a_pairs_file_with_a_fold_header_keeps_its_folds() {
        // 2 folds of 1 same + 1 different pair each.
        let text = "2 1\nA 1 2\nA 1 B 1\nC 1 2\nC 2 D 1\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pairs.txt");
        std::fs::write(&file, text).unwrap();
        let set = from_pairs_file(&file, Path::new("/lfw")).unwrap();
        assert_eq!(set.info.folds, "file");
        assert_eq!(set.pairs.iter().map(|p| p.fold).collect::<Vec<_>>(), [0, 0, 1, 1].map(Some));
        // A_0001 is in two pairs but listed once.
        assert_eq!(set.images.len(), 6);
        assert_eq!(set.images[set.pairs[0].a], PathBuf::from("/lfw/A/A_0001.jpg"));

        std::fs::write(&file, "2\nA 1 2\nA 1 B 1\n").unwrap();
        let stratified = from_pairs_file(&file, Path::new("/lfw")).unwrap();
        assert_eq!(stratified.info.folds, "stratified");
        assert_eq!(stratified.fold_count(), 1, "one pair of each kind cannot be cross-validated");
    }

    #[test]
    fn sampled_impostors_on_a_pairs_file_are_new_cross_identity_pairs_outside_the_folds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pairs.txt");
        // Images: A1 A2 B1 C1 C2 (A 1 2 is genuine, A 1 B 1 and C 2 B 1 impostor).
        std::fs::write(&file, "3\nA 1 2\nA 1 B 1\nC 2 B 1\nC 1 2\n").unwrap();
        let mut set = from_pairs_file(&file, Path::new("/lfw")).unwrap();
        let before = set.pairs.len();
        add_sampled_impostors(&mut set, 1_000, 3);
        // Cross-identity pairs among 5 images: C(5,2) - 2 same-identity = 8, 2 already there.
        let added = &set.pairs[before..];
        assert_eq!(added.len(), 6);
        assert!(added.iter().all(|p| !p.genuine && p.fold.is_none()));
        for p in added {
            assert_ne!(set.images[p.a].parent(), set.images[p.b].parent());
        }
        assert_eq!(set.info.impostor_sampling.as_ref().unwrap().available, 6);
        assert_eq!(set.fold_count(), 2, "the file's own pairs keep their folds");
    }

    #[test]
    fn a_folder_without_two_images_of_anyone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        touch_tree(dir.path(), &[("a", 1), ("b", 1)]);
        let err = from_identity_dirs(dir.path(), 10, 1).unwrap_err();
        assert!(err.to_string().contains("no genuine pair"), "{err}");
    }
}
