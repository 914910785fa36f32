//! 1:N search speed of the in-memory index: p50/p95/p99 of one identification over 10k and
//! 100k enrolled 128-d templates (synthetic unit vectors: speed does not depend on faces),
//! plus build time and memory. `cargo bench -p visage-server --bench identify`
//! (`-- 1000000` adds a size).

use std::time::Instant;

use uuid::Uuid;
use visage_server::gallery::GalleryIndex;
use visage_store::CollectionId;

const DIM: usize = 128;
const QUERIES: usize = 300;

/// xorshift: reproducible pseudo-random unit vectors without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..DIM)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut sizes = vec![10_000, 100_000];
    sizes.extend(std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok()));
    let collection = CollectionId::default_collection();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for size in sizes {
        let index = GalleryIndex::new(DIM);
        let started = Instant::now();
        for _ in 0..size {
            index.insert(&collection, Uuid::now_v7(), Uuid::now_v7(), &rng.unit());
        }
        let build = started.elapsed();
        let mut times: Vec<f64> = (0..QUERIES)
            .map(|_| {
                let probe = rng.unit();
                let started = Instant::now();
                std::hint::black_box(index.search(&collection, &probe, 0.35, 5));
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let megabytes = (size * (DIM * 4 + 32)) as f64 / 1e6;
        println!(
            "identify over {size:>8} templates: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (one core); index build {:.2} s, {megabytes:.0} MB",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            percentile(&times, 0.99),
            build.as_secs_f64(),
        );
    }
}
