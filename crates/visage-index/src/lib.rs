//! Exact 1:N search over unit-length face templates held in memory.
//!
//! A flat float32 scan of a million 128-dimensional templates reads 512 MB per query, which is
//! too slow. Each template is therefore also kept as int8 codes with one scale per template:
//! the scan reads a quarter of the memory and, for every row, bounds how far the int8
//! estimate can be from the true dot product. Only rows whose estimate plus that bound
//! reaches the threshold are scored again in float32, so the result is exactly that of the
//! float32 scan, only faster: no approximate-nearest-neighbour recall to explain to anyone.
//!
//! The bound: with `a = s_a·qa + e_a`, `|e_a,i| ≤ s_a/2` (and the same for the probe `b`),
//! `|a·b − s_a·s_b·(qa·qb)| ≤ (s_b·‖a‖₁ + s_a·‖b‖₁)/2 + dim·s_a·s_b/4`.
//!
//! The int8 scan uses the CPU's dot-product instructions where it has them ([`Kernel`]:
//! AVX-512 VNNI `vpdpbusd`, else AVX2 `vpmaddwd`, else a portable loop), chosen once when the
//! index is created; all compute the same integers and the same float32 estimate and bound,
//! so they pass the same rows. The SIMD kernels also ask for the codes a page ahead (the
//! hardware prefetchers stop at 4 KiB boundaries). Galleries of at least
//! [`PARALLEL_MIN_ROWS`] rows are scanned by several threads (one per core, at most
//! [`MAX_SEARCH_THREADS`]; [`FlatIndex::set_search_threads`]) taking shares of the rows in
//! turn; the shares' candidate rows are put back in row order, so the answer does not depend
//! on the thread count either. Equal similarities rank by id ([`FlatIndex::search`]).
//!
//! At a million 128-d rows the scan reads 136 MB per query (codes, scales, L1 norms) and is
//! bound by memory bandwidth, not arithmetic: on the 2-core development machines one core
//! streamed 37-48 GB/s (2.8-3.6 ms) and two 60-84 GB/s (1.6-2.2 ms) when nothing else ran.
//! `docs/performance.md` has the figures and the command (`bench/search.sh`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use uuid::Uuid;

// std::arch intrinsics need `unsafe` (denied in the workspace); no other module here may use it.
#[allow(unsafe_code)]
mod kernels;

pub use kernels::Kernel;
use kernels::{CODE_MAX, Query, Rows};

/// Galleries with fewer rows are scanned by the calling thread alone. Measured with 128-d
/// rows (avx512vnni, 2 idle cores), two threads broke even at 100k rows on one host (0.14 ms:
/// the rows fit the 32 MiB L3 cache and starting a thread costs tens of microseconds) and
/// saved 0.07 ms there on another; in the service the other core is usually embedding the
/// next probe, so below this a second thread is not worth taking from it.
pub const PARALLEL_MIN_ROWS: usize = 131_072;
/// At most this many threads scan one gallery.
pub const MAX_SEARCH_THREADS: usize = 8;
/// Rows in one share of a parallel scan at most (1 MiB of 128-d codes).
const MAX_SHARE_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub subject_id: Uuid,
    pub template_id: Uuid,
    /// Exact float32 dot product (cosine similarity of unit vectors).
    pub similarity: f32,
}

/// Int8 codes of one vector: `x ≈ scale·codes`.
struct Quantized {
    codes: Vec<i8>,
    scale: f32,
    l1_norm: f32,
}

fn quantize(vector: &[f32]) -> Quantized {
    let max = vector.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / CODE_MAX } else { 1.0 };
    let codes = vector.iter().map(|x| (x / scale).round().clamp(-CODE_MAX, CODE_MAX) as i8).collect();
    Quantized { codes, scale, l1_norm: vector.iter().map(|x| x.abs()).sum() }
}

/// The templates of one collection, in contiguous row-major arrays.
pub struct FlatIndex {
    dim: usize,
    vectors: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    l1_norms: Vec<f32>,
    /// (template id, subject id) of each row.
    owners: Vec<(Uuid, Uuid)>,
    /// Row of each template id, so inserts are idempotent and removals O(1).
    rows: HashMap<Uuid, usize>,
    /// The int8 dot-product instructions, detected once at creation.
    kernel: Kernel,
    /// Threads that scan a gallery of at least `parallel_min_rows` rows.
    search_threads: usize,
    /// [`PARALLEL_MIN_ROWS`] unless set.
    parallel_min_rows: usize,
}

impl FlatIndex {
    pub fn new(dim: usize) -> Self {
        assert!(dim > 0, "template dimension");
        Self {
            dim,
            vectors: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            l1_norms: Vec::new(),
            owners: Vec::new(),
            rows: HashMap::new(),
            kernel: Kernel::detect(),
            search_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_SEARCH_THREADS),
            parallel_min_rows: PARALLEL_MIN_ROWS,
        }
    }

    /// The int8 dot-product instructions in use ([`Kernel::detect`] unless set).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Uses `kernel` for the int8 scan (for tests and benchmarks; answers do not change).
    /// Panics when this CPU lacks its instructions.
    pub fn set_kernel(&mut self, kernel: Kernel) {
        assert!(kernel.is_available(), "{} is not available on this CPU", kernel.name());
        self.kernel = kernel;
    }

    /// Threads that scan a large gallery (the available cores, at most
    /// [`MAX_SEARCH_THREADS`], unless set).
    pub fn search_threads(&self) -> usize {
        self.search_threads
    }

    /// Scans galleries of at least [`PARALLEL_MIN_ROWS`] rows with `threads` threads (at least
    /// 1, the caller's; answers do not change).
    pub fn set_search_threads(&mut self, threads: usize) {
        assert!(threads > 0, "search threads");
        self.search_threads = threads;
    }

    /// Scans galleries of at least `rows` rows (instead of [`PARALLEL_MIN_ROWS`]) with
    /// several threads: for tests and benchmarks (answers do not change).
    pub fn set_parallel_min_rows(&mut self, rows: usize) {
        self.parallel_min_rows = rows;
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    pub fn contains(&self, template_id: Uuid) -> bool {
        self.rows.contains_key(&template_id)
    }

    pub fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional * self.dim);
        self.codes.reserve(additional * self.dim);
        self.scales.reserve(additional);
        self.l1_norms.reserve(additional);
        self.owners.reserve(additional);
        self.rows.reserve(additional);
    }

    /// Adds a template; false (and nothing changes) when its id is already indexed, so that
    /// replaying a change is harmless.
    pub fn insert(&mut self, template_id: Uuid, subject_id: Uuid, embedding: &[f32]) -> bool {
        assert_eq!(embedding.len(), self.dim, "template dimension");
        if self.rows.contains_key(&template_id) {
            return false;
        }
        let quantized = quantize(embedding);
        self.rows.insert(template_id, self.owners.len());
        self.vectors.extend_from_slice(embedding);
        self.codes.extend_from_slice(&quantized.codes);
        self.scales.push(quantized.scale);
        self.l1_norms.push(quantized.l1_norm);
        self.owners.push((template_id, subject_id));
        true
    }

    /// The subject a template belongs to, when it is indexed.
    pub fn subject_of(&self, template_id: Uuid) -> Option<Uuid> {
        self.rows.get(&template_id).map(|&row| self.owners[row].1)
    }

    /// The exact similarity of the subject's best template to the probe; `None` when the
    /// subject has no template here. A scan of the owners: for 1:1 while the database (which
    /// normally lists a subject's templates) cannot be reached.
    pub fn best_of_subject(&self, subject_id: Uuid, probe: &[f32]) -> Option<f32> {
        assert_eq!(probe.len(), self.dim, "probe dimension");
        let dim = self.dim;
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, (_, subject))| *subject == subject_id)
            .map(|(row, _)| dot(&self.vectors[row * dim..(row + 1) * dim], probe))
            .reduce(f32::max)
    }

    /// Removes one template; false when it was not indexed.
    pub fn remove(&mut self, template_id: Uuid) -> bool {
        let Some(row) = self.rows.remove(&template_id) else { return false };
        self.swap_remove_row(row);
        true
    }

    /// Removes every template of a subject; returns how many there were.
    pub fn remove_subject(&mut self, subject_id: Uuid) -> usize {
        let mut removed = 0;
        let mut row = 0;
        while row < self.owners.len() {
            let (template_id, subject) = self.owners[row];
            if subject == subject_id {
                self.rows.remove(&template_id);
                self.swap_remove_row(row);
                removed += 1;
            } else {
                row += 1;
            }
        }
        removed
    }

    /// Moves the last row into `row` (order is irrelevant to a scan) and drops the last one.
    fn swap_remove_row(&mut self, row: usize) {
        let last = self.owners.len() - 1;
        let dim = self.dim;
        if row != last {
            self.vectors.copy_within(last * dim..(last + 1) * dim, row * dim);
            self.codes.copy_within(last * dim..(last + 1) * dim, row * dim);
            let moved = self.owners[last].0;
            self.rows.insert(moved, row);
        }
        self.vectors.truncate(last * dim);
        self.codes.truncate(last * dim);
        self.scales.swap_remove(row);
        self.l1_norms.swap_remove(row);
        self.owners.swap_remove(row);
    }

    /// The best template of each subject whose similarity is at least `threshold`, best first,
    /// at most `top_k`. Identical to a float32 scan of every row. Equal similarities rank by
    /// id: a subject's best template is the one with the smallest template id among its
    /// highest-scoring ones, and subjects with equal scores come in subject-id order.
    pub fn search(&self, probe: &[f32], threshold: f32, top_k: usize) -> Vec<Candidate> {
        assert_eq!(probe.len(), self.dim, "probe dimension");
        let quantized = quantize(probe);
        let query = Query::new(&quantized.codes, quantized.scale, quantized.l1_norm, threshold);
        let rows = self.prefilter(&query);
        let mut best: HashMap<Uuid, Candidate> = HashMap::new();
        for row in rows {
            let similarity = dot(&self.vectors[row * self.dim..(row + 1) * self.dim], probe);
            if similarity < threshold {
                continue;
            }
            let (template_id, subject_id) = self.owners[row];
            let candidate = Candidate { subject_id, template_id, similarity };
            best.entry(subject_id)
                .and_modify(|c| {
                    let order = similarity.total_cmp(&c.similarity).then(c.template_id.cmp(&template_id));
                    if order.is_gt() {
                        *c = candidate;
                    }
                })
                .or_insert(candidate);
        }
        let mut candidates: Vec<Candidate> = best.into_values().collect();
        candidates.sort_unstable_by(|a, b| {
            b.similarity.total_cmp(&a.similarity).then(a.subject_id.cmp(&b.subject_id))
        });
        candidates.truncate(top_k);
        candidates
    }

    /// Rows whose int8 estimate, plus its error bound, reaches the threshold, in row order.
    /// A large gallery is cut into shares of whole 16-row blocks that up to `search_threads`
    /// threads (this one included) take in turn, so that a thread kept waiting by other work
    /// on its core takes fewer; the shares' rows are then put back in order, so the answer is
    /// the same whichever thread scanned what.
    fn prefilter(&self, query: &Query) -> Vec<usize> {
        let all = Rows { codes: &self.codes, scales: &self.scales, l1_norms: &self.l1_norms, first: 0 };
        let (kernel, dim, n) = (self.kernel, self.dim, all.len());
        let threads = if n < self.parallel_min_rows { 1 } else { self.search_threads };
        if threads <= 1 {
            let mut rows = Vec::new();
            kernels::prefilter(kernel, dim, all, query, &mut rows);
            return rows;
        }
        // About eight shares per thread, of 16 to MAX_SHARE_ROWS rows.
        let share = (n / (threads * 8)).clamp(16, MAX_SHARE_ROWS).next_multiple_of(16);
        let shares = n.div_ceil(share);
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= shares {
                    return done;
                }
                let mut rows = Vec::new();
                let start = i * share;
                kernels::prefilter(
                    kernel,
                    dim,
                    all.slice(dim, start, (start + share).min(n)),
                    query,
                    &mut rows,
                );
                if !rows.is_empty() {
                    done.push((i, rows));
                }
            }
        };
        let mut done = std::thread::scope(|scope| {
            let others: Vec<_> = (1..threads.min(shares)).map(|_| scope.spawn(work)).collect();
            let mut done = work();
            for other in others {
                done.extend(other.join().expect("a search thread panicked"));
            }
            done
        });
        done.sort_unstable_by_key(|&(i, _)| i);
        done.into_iter().flat_map(|(_, rows)| rows).collect()
    }

    /// Bytes held by the index (arrays and the id map), for capacity planning.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let map_entry = size_of::<Uuid>() + size_of::<usize>() + 1;
        self.vectors.capacity() * size_of::<f32>()
            + self.codes.capacity()
            + (self.scales.capacity() + self.l1_norms.capacity()) * size_of::<f32>()
            + self.owners.capacity() * size_of::<(Uuid, Uuid)>()
            + self.rows.capacity() * map_entry
    }
}

/// Float32 dot product in eight lanes, so that it vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Deterministic pseudo-random unit vectors, for tests and benchmarks.
pub mod synthetic {
    /// SplitMix64: small, fast, and the same sequence everywhere.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        pub fn next_f32(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
        }

        /// Roughly normal (sum of four uniforms), enough for direction-uniform vectors.
        pub fn next_normal(&mut self) -> f32 {
            (0..4).map(|_| self.next_f32()).sum::<f32>() - 2.0
        }
    }

    pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    pub fn unit_vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
        normalize((0..dim).map(|_| rng.next_normal()).collect())
    }

    /// `base` moved by noise of the given size and renormalised: a second photo of a face.
    pub fn near(rng: &mut Rng, base: &[f32], noise: f32) -> Vec<f32> {
        normalize(base.iter().map(|x| x + noise * rng.next_normal()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::synthetic::{Rng, near, unit_vector};
    use super::*;

    use super::kernels::{Kernel, Query, Rows, block_dots, dot_i8};

    /// The float32 scan the index must agree with, ties broken by id as `search` documents.
    fn brute_force(
        rows: &[(Uuid, Uuid, Vec<f32>)],
        probe: &[f32],
        threshold: f32,
        top_k: usize,
    ) -> Vec<Candidate> {
        let mut best: HashMap<Uuid, Candidate> = HashMap::new();
        for (template_id, subject_id, v) in rows {
            let similarity = dot(v, probe);
            let better = |c: &Candidate| {
                similarity > c.similarity || (similarity == c.similarity && *template_id < c.template_id)
            };
            if similarity >= threshold && best.get(subject_id).is_none_or(better) {
                best.insert(
                    *subject_id,
                    Candidate { subject_id: *subject_id, template_id: *template_id, similarity },
                );
            }
        }
        let mut all: Vec<_> = best.into_values().collect();
        all.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.subject_id.cmp(&b.subject_id)));
        all.truncate(top_k);
        all
    }

    /// Every kernel this CPU runs, each with 1 thread and with 3 (with [`configure`], the
    /// gallery is split however small).
    fn configurations() -> Vec<(Kernel, usize)> {
        Kernel::available().into_iter().flat_map(|k| [(k, 1), (k, 3)]).collect()
    }

    fn configure(index: &mut FlatIndex, kernel: Kernel, threads: usize) {
        index.set_kernel(kernel);
        index.set_search_threads(threads);
        index.set_parallel_min_rows(0);
    }

    #[test]
    fn the_fastest_kernel_is_chosen() {
        let kernel = FlatIndex::new(8).kernel();
        assert_eq!(kernel, Kernel::detect());
        assert!(Kernel::Portable.is_available());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            assert_eq!(kernel, Kernel::Avx512Vnni);
        } else if std::arch::is_x86_feature_detected!("avx2") {
            assert_eq!(kernel, Kernel::Avx2);
        }
        // Which kernels these tests compare on this machine (cargo test -- --nocapture).
        println!("kernels available: {:?}", Kernel::available());
    }

    /// Random codes in [-127, 127], the first rows replaced by extremes: all +127, all -127,
    /// alternating ±127, all 0, and a ramp.
    fn code_rows(rng: &mut Rng, dim: usize, rows: usize) -> Vec<i8> {
        let mut codes: Vec<i8> =
            (0..dim * rows).map(|_| ((rng.next_u64() % 255) as i32 - 127) as i8).collect();
        let extremes: [fn(usize) -> i8; 5] =
            [|_| 127, |_| -127, |i| if i % 2 == 0 { 127 } else { -127 }, |_| 0, |i| (i % 255) as i8];
        for (row, pattern) in extremes.iter().enumerate().take(rows) {
            for i in 0..dim {
                codes[row * dim + i] = pattern(i).max(-127);
            }
        }
        codes
    }

    #[test]
    fn every_kernel_computes_the_int8_dot_products_exactly() {
        let mut rng = Rng::new(5);
        // The specialised sizes, then sizes around the 16- and 64-byte chunks.
        for dim in [128, 192, 512, 1, 15, 16, 17, 63, 64, 65, 100, 129, 200] {
            let rows = 16 * 4 + 5;
            let codes = code_rows(&mut rng, dim, rows);
            let probe_rows = code_rows(&mut rng, dim, 8);
            for probe in probe_rows.chunks_exact(dim) {
                let query = Query::new(probe, 1.0, 1.0, 0.0);
                let want: Vec<i32> = codes.chunks_exact(dim).map(|row| dot_i8(row, probe)).collect();
                let naive: Vec<i32> = codes
                    .chunks_exact(dim)
                    .map(|row| row.iter().zip(probe).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum())
                    .collect();
                assert_eq!(want, naive, "dim {dim}");
                for kernel in Kernel::available() {
                    let got = block_dots(kernel, dim, &codes, &query);
                    assert!(got.len() >= 64, "{kernel:?} dim {dim}: whole blocks only, but some");
                    assert_eq!(got, want[..got.len()], "{kernel:?} dim {dim}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_passes_the_same_rows_as_the_portable_loop() {
        let mut rng = Rng::new(9);
        for dim in [128, 192, 512, 100] {
            let mut index = FlatIndex::new(dim);
            let base = unit_vector(&mut rng, dim);
            // Near and far rows, and a count that leaves partial blocks.
            for i in 0..16 * 20 + 7 {
                let v = if i % 3 == 0 { near(&mut rng, &base, 0.3) } else { unit_vector(&mut rng, dim) };
                index.insert(Uuid::new_v4(), Uuid::new_v4(), &v);
            }
            let probe = near(&mut rng, &base, 0.1);
            let quantized = quantize(&probe);
            let all =
                Rows { codes: &index.codes, scales: &index.scales, l1_norms: &index.l1_norms, first: 0 };
            for threshold in [-1.0, 0.0, 0.1, 0.2, 0.3, 0.36, 0.5, 0.7, 0.9] {
                let query = Query::new(&quantized.codes, quantized.scale, quantized.l1_norm, threshold);
                let mut want = Vec::new();
                kernels::prefilter(Kernel::Portable, dim, all, &query, &mut want);
                for kernel in Kernel::available() {
                    let mut got = Vec::new();
                    kernels::prefilter(kernel, dim, all, &query, &mut got);
                    assert_eq!(got, want, "{kernel:?} dim {dim} threshold {threshold}");
                    // And over a range that starts mid-gallery.
                    let mut part = Vec::new();
                    kernels::prefilter(kernel, dim, all.slice(dim, 5, all.len()), &query, &mut part);
                    let tail: Vec<usize> = want.iter().copied().filter(|&r| r >= 5).collect();
                    assert_eq!(part, tail, "{kernel:?} dim {dim} threshold {threshold} from row 5");
                }
            }
        }
    }

    #[test]
    fn ties_and_top_k_come_out_the_same_with_every_kernel_and_thread_count() {
        let dim = 128;
        let mut rng = Rng::new(23);
        let mut rows = Vec::new();
        let base = unit_vector(&mut rng, dim);
        let twins = near(&mut rng, &base, 0.05);
        // Many subjects holding the very same template (equal scores, to be ranked by id), some
        // of them twice under two template ids, among others near and far.
        for i in 0..700 {
            let subject = Uuid::new_v4();
            let v = match i % 7 {
                0 | 1 => twins.clone(),
                2 => near(&mut rng, &base, 0.2),
                _ => unit_vector(&mut rng, dim),
            };
            rows.push((Uuid::new_v4(), subject, v.clone()));
            if i % 7 == 0 {
                rows.push((Uuid::new_v4(), subject, v));
            }
        }
        let more_threads = Kernel::available().into_iter().flat_map(|k| [(k, 2), (k, 8)]);
        for (kernel, threads) in configurations().into_iter().chain(more_threads) {
            let mut index = FlatIndex::new(dim);
            configure(&mut index, kernel, threads);
            for (t, s, v) in &rows {
                index.insert(*t, *s, v);
            }
            for probe in [base.clone(), twins.clone(), near(&mut Rng::new(1), &base, 0.1)] {
                for (threshold, top_k) in
                    [(0.3, 5), (0.3, 150), (0.5, 1), (0.5, 1000), (-1.0, 10), (-1.0, 2000)]
                {
                    let got = index.search(&probe, threshold, top_k);
                    let want = brute_force(&rows, &probe, threshold, top_k);
                    assert_eq!(got, want, "{kernel:?} threads {threads} threshold {threshold} top_k {top_k}");
                }
            }
        }
    }

    #[test]
    fn a_subjects_best_template_is_the_float32_maximum_and_survives_removals() {
        let dim = 128;
        let mut rng = Rng::new(41);
        let mut index = FlatIndex::new(dim);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let base = unit_vector(&mut rng, dim);
        let rows: Vec<(Uuid, Uuid, Vec<f32>)> = (0..40)
            .map(|i| (Uuid::new_v4(), if i % 4 == 0 { alice } else { bob }, near(&mut rng, &base, 0.5)))
            .collect();
        for (template, subject, v) in &rows {
            index.insert(*template, *subject, v);
        }
        let probe = near(&mut rng, &base, 0.3);
        let best = |who: Uuid, rows: &[(Uuid, Uuid, Vec<f32>)]| {
            rows.iter().filter(|r| r.1 == who).map(|r| dot(&r.2, &probe)).reduce(f32::max)
        };
        assert_eq!(index.best_of_subject(alice, &probe), best(alice, &rows));
        assert_eq!(index.subject_of(rows[0].0), Some(alice));
        // Removing rows moves others (swap-remove): the answers must follow.
        for (template, _, _) in rows.iter().filter(|r| r.1 == alice).take(5) {
            assert!(index.remove(*template));
        }
        let left: Vec<_> = rows.iter().filter(|r| index.contains(r.0)).cloned().collect();
        assert_eq!(index.best_of_subject(alice, &probe), best(alice, &left));
        assert_eq!(index.best_of_subject(bob, &probe), best(bob, &left));
        assert_eq!(index.subject_of(rows[0].0), None);
        index.remove_subject(alice);
        assert_eq!(index.best_of_subject(alice, &probe), None);
    }

    #[test]
    fn search_equals_the_float32_scan_at_every_threshold() {
        // SFace, MobileFaceNet, ArcFace-512, and sizes without a specialised scan.
        for dim in [128, 192, 512, 100, 17] {
            search_equals_the_float32_scan(dim);
        }
    }

    fn search_equals_the_float32_scan(dim: usize) {
        let mut rng = Rng::new(7);
        let mut index = FlatIndex::new(dim);
        let mut rows = Vec::new();
        let subjects: Vec<Uuid> = (0..300).map(|_| Uuid::new_v4()).collect();
        let bases: Vec<Vec<f32>> = subjects.iter().map(|_| unit_vector(&mut rng, dim)).collect();
        for (subject, base) in subjects.iter().zip(&bases) {
            for _ in 0..3 {
                let v = near(&mut rng, base, 0.05);
                let id = Uuid::new_v4();
                assert!(index.insert(id, *subject, &v));
                rows.push((id, *subject, v));
            }
        }
        let mut cases = Vec::new();
        for (i, base) in bases.iter().enumerate().take(40) {
            let probe = near(&mut rng, base, 0.08 + 0.01 * (i % 10) as f32);
            for threshold in [-1.0, 0.0, 0.1, 0.2, 0.3, 0.36, 0.5, 0.9] {
                let want = brute_force(&rows, &probe, threshold, 10);
                cases.push((i, probe.clone(), threshold, want));
            }
        }
        for (kernel, threads) in configurations() {
            configure(&mut index, kernel, threads);
            for (i, probe, threshold, want) in &cases {
                let got = index.search(probe, *threshold, 10);
                assert_eq!(
                    &got, want,
                    "dim {dim} {kernel:?} threads {threads} probe {i} threshold {threshold}"
                );
            }
        }
    }

    #[test]
    fn the_error_bound_holds_for_extreme_vectors() {
        // One-hot and constant vectors are the worst cases for a per-vector scale.
        let dim = 16;
        let mut one_hot = vec![0f32; dim];
        one_hot[3] = 1.0;
        let flat = vec![1.0 / (dim as f32).sqrt(); dim];
        for (kernel, threads) in configurations() {
            let mut index = FlatIndex::new(dim);
            configure(&mut index, kernel, threads);
            // Sixteen pairs, so that the SIMD kernels scan them in whole blocks.
            for _ in 0..16 {
                let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
                index.insert(a, a, &one_hot);
                index.insert(b, b, &flat);
            }
            // one_hot · flat = 0.25 exactly: found at 0.25, not at 0.2501.
            for probe in [&flat, &one_hot] {
                assert_eq!(index.search(probe, 0.25, 50).len(), 32, "{kernel:?} threads {threads}");
                let hits = index.search(probe, 0.2501, 50);
                assert_eq!(hits.len(), 16, "{kernel:?} threads {threads}: {hits:?}");
                assert!((hits[0].similarity - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn inserts_are_idempotent_and_removals_keep_other_rows_findable() {
        let dim = 32;
        let mut rng = Rng::new(11);
        let mut index = FlatIndex::new(dim);
        let entries: Vec<(Uuid, Uuid, Vec<f32>)> =
            (0..50).map(|_| (Uuid::new_v4(), Uuid::new_v4(), unit_vector(&mut rng, dim))).collect();
        for (t, s, v) in &entries {
            assert!(index.insert(*t, *s, v));
        }
        assert!(!index.insert(entries[0].0, entries[0].1, &entries[0].2));
        assert_eq!(index.len(), 50);
        assert!(index.remove(entries[0].0));
        assert!(!index.remove(entries[0].0));
        assert_eq!(index.remove_subject(entries[7].1), 1);
        assert_eq!(index.remove_subject(entries[7].1), 0);
        assert_eq!(index.len(), 48);
        for (i, (t, s, v)) in entries.iter().enumerate() {
            let hits = index.search(v, 0.999, 1);
            if i == 0 || i == 7 {
                assert!(hits.is_empty());
                assert!(!index.contains(*t));
            } else {
                assert_eq!((hits[0].template_id, hits[0].subject_id), (*t, *s), "row {i}");
            }
        }
    }

    #[test]
    fn search_keeps_the_best_template_per_subject_and_respects_top_k() {
        let dim = 64;
        let mut rng = Rng::new(3);
        let mut index = FlatIndex::new(dim);
        let base = unit_vector(&mut rng, dim);
        let subject = Uuid::new_v4();
        let (close, far) = (Uuid::new_v4(), Uuid::new_v4());
        index.insert(far, subject, &near(&mut rng, &base, 0.3));
        index.insert(close, subject, &near(&mut rng, &base, 0.01));
        for _ in 0..5 {
            let other = Uuid::new_v4();
            index.insert(Uuid::new_v4(), other, &near(&mut rng, &base, 0.2));
        }
        let hits = index.search(&base, -1.0, 3);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].template_id, close);
        assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert_eq!(index.search(&base, -1.0, 100).len(), 6);
    }
}
