//! 1:N search speed, build time and memory at gallery sizes of 100k and 1M synthetic unit
//! templates (128 dimensions, as SFace), one thread. Prints one JSON line per size.
//!   cargo bench -p visage-index --bench search [-- SIZES]   e.g. `-- 100000 1000000`
//! Each query is a noisy copy of an enrolled template (one true match) searched at the SFace
//! threshold for FAR 1e-3, 0.36.

use std::time::Instant;

use uuid::Uuid;
use visage_index::FlatIndex;
use visage_index::synthetic::{Rng, near, unit_vector};

const DIM: usize = 128;
const QUERIES: usize = 300;
const THRESHOLD: f32 = 0.36;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let sizes: Vec<usize> =
        std::env::args().skip(1).filter(|a| !a.starts_with('-')).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100_000, 1_000_000] } else { sizes };
    for size in sizes {
        let mut rng = Rng::new(42);
        let started = Instant::now();
        let mut vectors = Vec::with_capacity(size);
        for _ in 0..size {
            vectors.push(unit_vector(&mut rng, DIM));
        }
        let generated = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut index = FlatIndex::new(DIM);
        index.reserve(size);
        let mut ids = Vec::with_capacity(size);
        for v in &vectors {
            let (template, subject) = (Uuid::new_v4(), Uuid::new_v4());
            index.insert(template, subject, v);
            ids.push(subject);
        }
        let build_seconds = started.elapsed().as_secs_f64();
        let mut millis = Vec::with_capacity(QUERIES);
        let mut found = 0;
        for q in 0..QUERIES {
            let target = (q * 7919) % size;
            let probe = near(&mut rng, &vectors[target], 0.06);
            let started = Instant::now();
            let hits = index.search(&probe, THRESHOLD, 5);
            millis.push(started.elapsed().as_secs_f64() * 1000.0);
            found += usize::from(hits.first().is_some_and(|h| h.subject_id == ids[target]));
        }
        millis.sort_by(f64::total_cmp);
        drop(vectors);
        println!(
            "{{\"templates\":{size},\"dim\":{DIM},\"threads\":1,\"queries\":{QUERIES},\"p50_ms\":{:.2},\"p95_ms\":{:.2},\"p99_ms\":{:.2},\"found\":{found},\"build_seconds\":{build_seconds:.2},\"index_mib\":{:.0},\"mib_per_million\":{:.0},\"generate_seconds\":{generated:.1}}}",
            percentile(&millis, 0.5),
            percentile(&millis, 0.95),
            percentile(&millis, 0.99),
            index.memory_bytes() as f64 / 1048576.0,
            index.memory_bytes() as f64 / 1048576.0 * 1e6 / size as f64,
        );
    }
}
