//! 1:N search speed, build time and memory at gallery sizes of 100k and 1M synthetic unit
//! templates (128 dimensions, as SFace), for every int8 kernel this CPU runs (`"kernel"`:
//! portable, avx2, avx512vnni) with one thread and with the default thread count (one per core,
//! `"threads"`). Prints one JSON line per size, kernel and thread count.
//!   cargo bench -p visage-index --bench search [-- SIZES]   e.g. `-- 100000 1000000`
//! (`bench/search.sh [SIZES]` runs it and prints the CPU it ran on.)
//! `KERNELS=avx512vnni,portable` limits the kernels measured.
//! Each query is a noisy copy of an enrolled template (one true match) searched at the SFace
//! threshold for FAR 1e-3, 0.36; every configuration answers the same queries, and
//! `"identical"` says whether its answers equal the first configuration's (they must).
//! Every line runs its thread count whatever the size; `"default":true` marks the one the
//! service runs (the detected kernel; below `PARALLEL_MIN_ROWS` rows, one thread).

use std::time::Instant;

use uuid::Uuid;
use visage_index::synthetic::{Rng, near, unit_vector};
use visage_index::{Candidate, FlatIndex, Kernel, PARALLEL_MIN_ROWS};

const DIM: usize = 128;
const QUERIES: usize = 300;
const WARM_UP: usize = 10;
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
        let targets: Vec<usize> = (0..QUERIES).map(|q| (q * 7919) % size).collect();
        let probes: Vec<Vec<f32>> = targets.iter().map(|&t| near(&mut rng, &vectors[t], 0.06)).collect();
        drop(vectors);
        let all_threads = index.search_threads();
        let mut first_answers: Option<Vec<Vec<Candidate>>> = None;
        let wanted = std::env::var("KERNELS").unwrap_or_default();
        let kernels = Kernel::available()
            .into_iter()
            .filter(|k| wanted.is_empty() || wanted.split(',').any(|w| w == k.name()));
        for kernel in kernels {
            let mut thread_counts = vec![1, all_threads];
            thread_counts.dedup();
            for threads in thread_counts {
                index.set_kernel(kernel);
                index.set_search_threads(threads);
                // What the service runs at this size (below PARALLEL_MIN_ROWS, one thread).
                let default = kernel == Kernel::detect()
                    && threads == if size < PARALLEL_MIN_ROWS { 1 } else { all_threads };
                index.set_parallel_min_rows(0);
                for probe in probes.iter().take(WARM_UP) {
                    std::hint::black_box(index.search(probe, THRESHOLD, 5));
                }
                let mut millis = Vec::with_capacity(QUERIES);
                let mut answers = Vec::with_capacity(QUERIES);
                for probe in &probes {
                    let started = Instant::now();
                    let hits = index.search(probe, THRESHOLD, 5);
                    millis.push(started.elapsed().as_secs_f64() * 1000.0);
                    answers.push(hits);
                }
                let found = answers
                    .iter()
                    .zip(&targets)
                    .filter(|(h, t)| h.first().is_some_and(|h| h.subject_id == ids[**t]))
                    .count();
                let identical = first_answers.get_or_insert_with(|| answers.clone()) == &answers;
                millis.sort_by(f64::total_cmp);
                println!(
                    "{{\"templates\":{size},\"dim\":{DIM},\"kernel\":\"{}\",\"threads\":{threads},\"default\":{default},\"queries\":{QUERIES},\"min_ms\":{:.2},\"p50_ms\":{:.2},\"p95_ms\":{:.2},\"p99_ms\":{:.2},\"found\":{found},\"identical\":{identical},\"build_seconds\":{build_seconds:.2},\"index_mib\":{:.0},\"mib_per_million\":{:.0},\"generate_seconds\":{generated:.1}}}",
                    kernel.name(),
                    millis[0],
                    percentile(&millis, 0.5),
                    percentile(&millis, 0.95),
                    percentile(&millis, 0.99),
                    index.memory_bytes() as f64 / 1048576.0,
                    index.memory_bytes() as f64 / 1048576.0 * 1e6 / size as f64,
                );
            }
        }
    }
}
