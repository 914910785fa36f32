//! `visage evaluate-multiface`: how a subject with several enrolled faces should be scored
//! against a probe. Identities with more than `enrol` images enrol their first `enrol` (in file
//! name order) and probe with each of the rest; every probe is scored against every subject by
//! each rule; TAR at FAR 1e-3 and 1e-4 (each rule at its own threshold) says which rule
//! separates people best. Identities are split in two halves by a hash of their name, so that
//! a rule chosen on one half is reported on the other.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use visage_face::Embedding;
use visage_stats::{ScoreSet, Z_95, wilson_interval};

use crate::commands::Context;
use crate::evaluation::{parallel_map, thread_count};

/// One enrolled or probe face: its embedding and the quality measure the weighted rules use.
#[derive(Clone)]
struct Face {
    embedding: Embedding,
    /// Inter-eye distance in pixels: more pixels on the face, more detail in the template.
    weight: f32,
}

/// How a probe's similarity to a subject with several templates is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The best of the per-template similarities (what the service does today).
    Best,
    /// The mean of the per-template similarities.
    MeanScore,
    /// The similarity to the normalised mean of the templates.
    MeanTemplate,
    /// The similarity to the normalised quality-weighted mean of the templates.
    WeightedTemplate,
    /// The quality-weighted mean of the per-template similarities.
    WeightedScore,
}

pub const RULES: [Rule; 5] =
    [Rule::Best, Rule::MeanScore, Rule::MeanTemplate, Rule::WeightedTemplate, Rule::WeightedScore];

/// The probe's similarity to a subject's templates under `rule`.
pub fn score(rule: Rule, probe: &[f32], templates: &[(&[f32], f32)]) -> f32 {
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let centroid = |weighted: bool| {
        let mut sum = vec![0.0f32; probe.len()];
        for (t, w) in templates {
            let w = if weighted { *w } else { 1.0 };
            for (s, v) in sum.iter_mut().zip(*t) {
                *s += w * v;
            }
        }
        let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        sum.iter().map(|v| v / norm).collect::<Vec<f32>>()
    };
    let scores = templates.iter().map(|(t, _)| cosine(probe, t));
    match rule {
        Rule::Best => scores.fold(f32::NEG_INFINITY, f32::max),
        Rule::MeanScore => scores.sum::<f32>() / templates.len() as f32,
        Rule::MeanTemplate => cosine(probe, &centroid(false)),
        Rule::WeightedTemplate => cosine(probe, &centroid(true)),
        Rule::WeightedScore => {
            let total: f32 = templates.iter().map(|(_, w)| w).sum();
            templates.iter().map(|(t, w)| w * cosine(probe, t)).sum::<f32>() / total.max(f32::MIN_POSITIVE)
        }
    }
}

pub struct Args<'a> {
    pub identities: &'a Path,
    pub enrol: usize,
    pub threads: Option<usize>,
}

/// Which half of the identities a name falls in (FNV-1a of the name, even or odd).
fn half(name: &str) -> usize {
    let hash = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % 2) as usize
}

pub fn evaluate(ctx: &Context, args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.enrol >= 1, "--enrol must be at least 1");
    let mut identities: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for entry in std::fs::read_dir(args.identities).with_context(|| args.identities.display().to_string())? {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let mut images: Vec<PathBuf> =
            std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        images.sort();
        if images.len() > args.enrol {
            identities.push((dir.file_name().unwrap_or_default().to_string_lossy().into_owned(), images));
        }
    }
    identities.sort();
    let paths: Vec<PathBuf> = identities.iter().flat_map(|(_, images)| images.clone()).collect();
    let engine = ctx.engine()?;
    let faces = parallel_map(&paths, thread_count(args.threads), "embedding", |path| {
        let bytes = std::fs::read(path).ok()?;
        let face = engine.analyze_bytes(&bytes).ok()?;
        Some(Face { embedding: face.embedding.clone(), weight: face.quality.measures.inter_eye_distance })
    });
    let failed = faces.iter().filter(|f| f.is_none()).count();
    let mut faces = faces.into_iter();
    // Per identity: enrolled faces and probes (an image that failed is left out of both).
    let mut subjects: Vec<(String, Vec<Face>, Vec<Face>)> = Vec::new();
    for (name, images) in &identities {
        let own: Vec<Option<Face>> = faces.by_ref().take(images.len()).collect();
        let (enrolled, probes) = own.split_at(args.enrol);
        let enrolled: Vec<Face> = enrolled.iter().flatten().cloned().collect();
        let probes: Vec<Face> = probes.iter().flatten().cloned().collect();
        if enrolled.len() == args.enrol && !probes.is_empty() {
            subjects.push((name.clone(), enrolled, probes));
        }
    }

    let mut halves = Vec::new();
    for which in 0..2 {
        let part: Vec<&(String, Vec<Face>, Vec<Face>)> =
            subjects.iter().filter(|(n, _, _)| half(n) == which).collect();
        let mut rules = Vec::new();
        for rule in RULES {
            let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
            for (probe_owner, _, probes) in &part {
                for probe in probes {
                    for (owner, enrolled, _) in &part {
                        let templates: Vec<(&[f32], f32)> =
                            enrolled.iter().map(|f| (f.embedding.as_slice(), f.weight)).collect();
                        let s = f64::from(score(rule, probe.embedding.as_slice(), &templates));
                        if owner == probe_owner { genuine.push(s) } else { impostor.push(s) }
                    }
                }
            }
            let set = ScoreSet::new(genuine, impostor).map_err(anyhow::Error::msg)?;
            let at = |far: f64| {
                let tar = set.tar_at_far(far);
                let rejected = tar.tar.map(|t| ((1.0 - t) * set.genuine().len() as f64).round() as usize);
                json!({
                    "far": far,
                    "tar": tar.tar,
                    "threshold": tar.threshold,
                    "frr_95ci": rejected.map(|r| wilson_interval(r, set.genuine().len(), Z_95)),
                })
            };
            rules.push(json!({
                "rule": rule,
                "genuine": set.genuine().len(),
                "impostor": set.impostor().len(),
                "at_far_1e-3": at(1e-3),
                "at_far_1e-4": at(1e-4),
                "eer": set.eer().rate,
            }));
        }
        halves.push(json!({ "half": which, "identities": part.len(), "rules": rules }));
    }
    let report = json!({
        "schema": "visage.multiface/1",
        "identities_dir": args.identities,
        "recognizer": ctx.recognizer,
        "enrolled_per_subject": args.enrol,
        "subjects": subjects.len(),
        "failed_images": failed,
        "halves": halves,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn each_rule_scores_as_it_says() {
        let probe = unit(&[1.0, 0.0]);
        let (a, b) = (unit(&[1.0, 1.0]), unit(&[0.0, 1.0]));
        let templates = [(a.as_slice(), 3.0), (b.as_slice(), 1.0)];
        let cos_a = std::f32::consts::FRAC_1_SQRT_2;
        assert!((score(Rule::Best, &probe, &templates) - cos_a).abs() < 1e-6);
        assert!((score(Rule::MeanScore, &probe, &templates) - cos_a / 2.0).abs() < 1e-6);
        // The mean of a and b points at 22.5 degrees above b's axis: cos(67.5 degrees).
        let mean_template = (67.5f32).to_radians().cos();
        assert!((score(Rule::MeanTemplate, &probe, &templates) - mean_template).abs() < 1e-6);
        assert!((score(Rule::WeightedScore, &probe, &templates) - 3.0 * cos_a / 4.0).abs() < 1e-6);
        let weighted = unit(&[3.0 * a[0] + b[0], 3.0 * a[1] + b[1]]);
        assert!((score(Rule::WeightedTemplate, &probe, &templates) - weighted[0]).abs() < 1e-6);
    }

    #[test]
    fn with_one_template_every_rule_is_the_plain_similarity() {
        let probe = unit(&[0.3, 0.9, 0.1]);
        let t = unit(&[0.5, 0.5, 0.7]);
        let plain: f32 = probe.iter().zip(&t).map(|(x, y)| x * y).sum();
        for rule in RULES {
            assert!((score(rule, &probe, &[(t.as_slice(), 2.0)]) - plain).abs() < 1e-6, "{rule:?}");
        }
    }

    #[test]
    fn names_split_into_two_stable_halves() {
        assert_eq!(half("Bob_Graham"), half("Bob_Graham"));
        let names = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal"];
        let odd = names.iter().filter(|n| half(n) == 1).count();
        assert!(odd > 0 && odd < names.len(), "both halves get names");
    }
}
