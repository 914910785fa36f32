//! The int8 prefilter: for a contiguous range of rows, the rows whose int8 estimate plus its
//! error bound reaches the threshold. One portable loop and, on x86-64, two SIMD versions
//! chosen at run time ([`Kernel::detect`]). Every version computes the same integer dot
//! products (exact) and the same float32 estimate and bound, operation for operation, so they
//! pass exactly the same rows (the tests compare them).

/// Which instructions compute the int8 dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust, for every CPU (the compiler vectorises it with the baseline instructions).
    Portable,
    /// AVX2: codes widened to i16 and multiplied pairwise (`vpmaddwd`), eight rows at a time.
    Avx2,
    /// AVX-512 VNNI: 64 code pairs per `vpdpbusd`, sixteen rows at a time.
    Avx512Vnni,
}

impl Kernel {
    /// Every kernel, fastest last.
    pub const ALL: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512Vnni];

    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        Self::ALL.into_iter().rev().find(|k| k.is_available()).unwrap_or(Kernel::Portable)
    }

    /// The kernels this CPU runs, portable first.
    pub fn available() -> Vec<Kernel> {
        Self::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Short name, as the benchmark prints it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
        }
    }
}

/// Largest code magnitude: symmetric, so that negation never overflows.
pub(crate) const CODE_MAX: f32 = 127.0;
/// Float32 rounding in the estimate and the bound themselves (both are sums of at most a few
/// hundred terms of magnitude ≤ 1).
pub(crate) const ROUNDING_SLACK: f32 = 1e-4;
/// Probe codes are padded with zeros to a multiple of this many bytes (one AVX-512 register).
const PAD: usize = 64;

/// The probe as every kernel needs it, computed once per search.
pub(crate) struct Query {
    /// Int8 codes, zero-padded to a multiple of 64 (zeros add nothing to a dot product).
    pub codes: Vec<i8>,
    pub scale: f32,
    pub l1_norm: f32,
    pub threshold: f32,
    /// Sum of the codes: `vpdpbusd` multiplies unsigned by signed bytes, so the gallery codes
    /// are biased by +128 as they are loaded and `128·code_sum` taken off again (exact in i32).
    pub code_sum: i32,
}

impl Query {
    pub fn new(codes: &[i8], scale: f32, l1_norm: f32, threshold: f32) -> Self {
        let mut padded = codes.to_vec();
        padded.resize(codes.len().div_ceil(PAD) * PAD, 0);
        let code_sum = codes.iter().map(|&c| i32::from(c)).sum();
        Self { codes: padded, scale, l1_norm, threshold, code_sum }
    }
}

/// A contiguous range of gallery rows.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    /// `scales.len()·dim` codes, row after row.
    pub codes: &'a [i8],
    pub scales: &'a [f32],
    pub l1_norms: &'a [f32],
    /// Index of the first row in the whole gallery.
    pub first: usize,
}

impl<'a> Rows<'a> {
    /// Rows `start..end` of this range.
    pub fn slice(&self, dim: usize, start: usize, end: usize) -> Rows<'a> {
        Rows {
            codes: &self.codes[start * dim..end * dim],
            scales: &self.scales[start..end],
            l1_norms: &self.l1_norms[start..end],
            first: self.first + start,
        }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }
}

/// Appends to `out` the gallery index of every row in `rows` that may reach the threshold.
pub(crate) fn prefilter(kernel: Kernel, dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
    assert!(rows.codes.len() == rows.len() * dim && rows.l1_norms.len() == rows.len());
    assert!(query.codes.len() >= dim && query.codes.len().is_multiple_of(PAD));
    match kernel {
        Kernel::Portable => portable::prefilter(dim, rows, query, out),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            assert!(kernel.is_available(), "AVX2 on this CPU");
            // SAFETY: the CPU has AVX2 (checked just above); `prefilter` reads only inside
            // `rows` and `query.codes`, whose lengths were checked above.
            unsafe { x86::prefilter_avx2(dim, rows, query, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => {
            assert!(kernel.is_available(), "AVX-512 VNNI on this CPU");
            // SAFETY: the CPU has AVX-512 F, BW and VNNI (checked just above); lengths as above.
            unsafe { x86::prefilter_avx512vnni(dim, rows, query, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("{} is not available on this CPU", kernel.name()),
    }
}

/// The test every kernel applies to a row's int8 dot product, in exactly this order of
/// float32 operations (the SIMD kernels repeat it lane by lane, so they pass the same rows).
/// The bound: with `a = s_a·qa + e_a`, `|e_a,i| ≤ s_a/2` (and the same for the probe `b`),
/// `|a·b − s_a·s_b·(qa·qb)| ≤ (s_b·‖a‖₁ + s_a·‖b‖₁)/2 + dim·s_a·s_b/4`.
#[inline(always)]
fn passes(dot: i32, scale: f32, l1_norm: f32, dim_term: f32, query: &Query) -> bool {
    let estimate = scale * query.scale * dot as f32;
    let bound = 0.5 * (query.scale * l1_norm + scale * query.l1_norm)
        + dim_term * scale * query.scale
        + ROUNDING_SLACK;
    estimate + bound >= query.threshold
}

/// Int8 dot product in sixteen i32 lanes (exact: |sum| ≤ dim·127² fits easily).
#[inline(always)]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut lanes = [0i32; 16];
    let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..16 {
            lanes[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    lanes.iter().sum::<i32>() + tail
}

mod portable {
    use super::{Query, Rows, dot_i8, passes};

    pub fn prefilter(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        // A length known at compile time lets the int8 loop unroll completely (2-3x faster).
        match dim {
            128 => fixed::<128>(rows, query, out),
            192 => fixed::<192>(rows, query, out),
            512 => fixed::<512>(rows, query, out),
            _ => any(dim, rows, query, out),
        }
    }

    fn fixed<const D: usize>(rows: Rows, query: &Query, out: &mut Vec<usize>) {
        let probe: &[i8; D] = query.codes[..D].try_into().expect("probe dimension");
        let codes = rows.codes.as_chunks::<D>().0;
        let dim_term = D as f32 / 4.0;
        let n = codes.len().min(rows.scales.len()).min(rows.l1_norms.len());
        let (scales, l1_norms) = (&rows.scales[..n], &rows.l1_norms[..n]);
        for row in 0..n {
            if passes(dot_i8(&codes[row], probe), scales[row], l1_norms[row], dim_term, query) {
                out.push(rows.first + row);
            }
        }
    }

    pub fn any(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        let probe = &query.codes[..dim];
        let dim_term = dim as f32 / 4.0;
        let bounds = rows.scales.iter().zip(rows.l1_norms);
        for (row, (codes, (&scale, &l1_norm))) in rows.codes.chunks_exact(dim).zip(bounds).enumerate() {
            if passes(dot_i8(codes, probe), scale, l1_norm, dim_term, query) {
                out.push(rows.first + row);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Query, ROUNDING_SLACK, Rows, portable};

    /// How far ahead of the rows being scanned their codes are asked for (`prefetcht0`): one
    /// 4 KiB page, because the hardware prefetchers stop at page boundaries. Measured at 1M
    /// 128-d rows: about 3.3 ms per query on one core instead of 4.4 (2 KiB: 3.9, 8 KiB: 3.4).
    const PREFETCH: usize = 4096;

    /// Asks for the cache lines of `codes[from + PREFETCH..to + PREFETCH]` (what is left of it
    /// inside `codes`).
    #[inline]
    fn prefetch(codes: &[i8], from: usize, to: usize) {
        let (from, to) = ((from + PREFETCH).min(codes.len()), (to + PREFETCH).min(codes.len()));
        for line in (from..to).step_by(64) {
            // SAFETY: `line < codes.len()`; a prefetch reads nothing the program sees.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(codes.as_ptr().add(line).cast()) };
        }
    }

    /// AVX-512 VNNI: sixteen rows per block, each row's 64-byte chunks multiplied by the probe
    /// with `vpdpbusd` (unsigned × signed bytes, four products summed into each i32 lane); the
    /// gallery codes are biased to unsigned by flipping their top bit (`c ^ 0x80 = c + 128`)
    /// and `128·Σprobe` is subtracted once per row. A dimension that is not a multiple of 64
    /// reads its last chunk with a byte mask (the masked bytes read as 0, biased to 128, and
    /// meet the probe's zero padding). Rows left over after the last full block go through the
    /// portable loop.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI; `rows.codes.len() == rows.len()·dim`,
    /// `rows.l1_norms.len() == rows.len()`, and `query.codes` holds at least `dim` codes padded
    /// to a multiple of 64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn prefilter_avx512vnni(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        // SAFETY (all four): the caller's contract, passed on.
        unsafe {
            match dim {
                128 => avx512vnni::<128>(dim, rows, query, out),
                192 => avx512vnni::<192>(dim, rows, query, out),
                512 => avx512vnni::<512>(dim, rows, query, out),
                _ => avx512vnni::<0>(dim, rows, query, out),
            }
        }
    }

    /// `D` is the dimension when known at compile time (the chunk loop then unrolls), 0 for
    /// any other dimension. Safety: as [`prefilter_avx512vnni`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn avx512vnni<const D: usize>(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        let dim = if D == 0 { dim } else { D };
        let (query_scale, query_l1) = (_mm512_set1_ps(query.scale), _mm512_set1_ps(query.l1_norm));
        let (half, dim_term) = (_mm512_set1_ps(0.5), _mm512_set1_ps(dim as f32 / 4.0));
        let (slack, threshold) = (_mm512_set1_ps(ROUNDING_SLACK), _mm512_set1_ps(query.threshold));
        let blocks = rows.len() / 16;
        for block in 0..blocks {
            let first = block * 16;
            prefetch(rows.codes, first * dim, (first + 16) * dim);
            // SAFETY: rows `first..first + 16` lie inside `rows.codes`; the rest is the
            // caller's contract.
            let dots = unsafe { dots16::<D>(dim, &rows.codes[first * dim..(first + 16) * dim], query) };
            // SAFETY: `first + 16 <= rows.len()`, the length of both arrays.
            let (scale, l1_norm) = unsafe {
                (
                    _mm512_loadu_ps(rows.scales.as_ptr().add(first)),
                    _mm512_loadu_ps(rows.l1_norms.as_ptr().add(first)),
                )
            };
            // `passes`, operation for operation.
            let estimate = _mm512_mul_ps(_mm512_mul_ps(scale, query_scale), _mm512_cvtepi32_ps(dots));
            let bound = _mm512_add_ps(
                _mm512_add_ps(
                    _mm512_mul_ps(
                        half,
                        _mm512_add_ps(_mm512_mul_ps(query_scale, l1_norm), _mm512_mul_ps(scale, query_l1)),
                    ),
                    _mm512_mul_ps(_mm512_mul_ps(dim_term, scale), query_scale),
                ),
                slack,
            );
            let mut passing = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_add_ps(estimate, bound), threshold);
            while passing != 0 {
                out.push(rows.first + first + passing.trailing_zeros() as usize);
                passing &= passing - 1;
            }
        }
        portable::any(dim, rows.slice(dim, blocks * 16, rows.len()), query, out);
    }

    /// The int8 dot products of sixteen consecutive rows (`block`, `16·dim` codes) with the
    /// probe, lane `r` for row `r`.
    ///
    /// # Safety
    /// As [`prefilter_avx512vnni`], with `block.len() == 16·dim` and `D` 0 or `dim`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dots16<const D: usize>(dim: usize, block: &[i8], query: &Query) -> __m512i {
        let dim = if D == 0 { dim } else { D };
        let (full, tail) = (dim / 64, dim % 64);
        let tail_mask: __mmask64 = if tail == 0 { 0 } else { (1u64 << tail) - 1 };
        let bias = _mm512_set1_epi8(i8::MIN);
        let mut sums = [_mm512_setzero_si512(); 16];
        for (r, sum) in sums.iter_mut().enumerate() {
            let row = block[r * dim..(r + 1) * dim].as_ptr();
            for c in 0..full + usize::from(tail != 0) {
                // SAFETY: chunk `c` of the row lies inside it (a full chunk) or is read through
                // `tail_mask`, which suppresses the bytes past it; probe chunk `c` lies inside
                // the padded `query.codes` (at least `dim` codes, a multiple of 64).
                let (codes, probe) = unsafe {
                    let codes = if c < full {
                        _mm512_loadu_si512(row.add(c * 64).cast())
                    } else {
                        _mm512_maskz_loadu_epi8(tail_mask, row.add(c * 64))
                    };
                    (codes, _mm512_loadu_si512(query.codes.as_ptr().add(c * 64).cast()))
                };
                *sum = _mm512_dpbusd_epi32(*sum, _mm512_xor_si512(codes, bias), probe);
            }
        }
        _mm512_sub_epi32(sum16(sums), _mm512_set1_epi32(128 * query.code_sum))
    }

    /// The sums of the sixteen i32 lanes of each of sixteen vectors, as one vector (lane `r` is
    /// the sum of `v[r]`): pairs are interleaved and added at 32-, 64-, 128- and 256-bit
    /// granularity, 15 additions instead of 16 separate horizontal sums.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sum16(v: [__m512i; 16]) -> __m512i {
        let pair32 = |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
        let pair64 = |a, b| _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
        // 128-bit lanes 0 and 2 of `a`, then of `b`, plus lanes 1 and 3 of each.
        let pair128 = |a, b| {
            _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
            )
        };
        // Within each 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3].
        let t: [__m512i; 8] = std::array::from_fn(|i| pair32(v[2 * i], v[2 * i + 1]));
        // Within each 128-bit lane: that lane's sums of rows 4i..4i+4.
        let u: [__m512i; 4] = std::array::from_fn(|i| pair64(t[2 * i], t[2 * i + 1]));
        // 128-bit lanes: rows 0-3 (two halves), rows 4-7 (two halves); then rows 8-15.
        let (w0, w1) = (pair128(u[0], u[1]), pair128(u[2], u[3]));
        // 128-bit lanes: rows 0-3, 4-7, 8-11, 12-15.
        pair128(w0, w1)
    }

    /// AVX2: eight rows per block, each row's 16-byte chunks sign-extended to i16 and
    /// multiplied by the (pre-widened) probe with `vpmaddwd`, which adds pairs into i32 lanes
    /// without the saturation of `vpmaddubsw`. A dimension that is not a multiple of 16 adds
    /// its last few products in plain Rust; rows left over after the last full block go
    /// through the portable loop.
    ///
    /// # Safety
    /// The CPU must have AVX2; lengths as for [`prefilter_avx512vnni`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn prefilter_avx2(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        // SAFETY (all four): the caller's contract, passed on.
        unsafe {
            match dim {
                128 => avx2::<128>(dim, rows, query, out),
                192 => avx2::<192>(dim, rows, query, out),
                512 => avx2::<512>(dim, rows, query, out),
                _ => avx2::<0>(dim, rows, query, out),
            }
        }
    }

    /// `D` as for [`avx512vnni`]. Safety: as [`prefilter_avx2`].
    #[target_feature(enable = "avx2")]
    unsafe fn avx2<const D: usize>(dim: usize, rows: Rows, query: &Query, out: &mut Vec<usize>) {
        let dim = if D == 0 { dim } else { D };
        let probe = widen(dim, query);
        let (query_scale, query_l1) = (_mm256_set1_ps(query.scale), _mm256_set1_ps(query.l1_norm));
        let (half, dim_term) = (_mm256_set1_ps(0.5), _mm256_set1_ps(dim as f32 / 4.0));
        let (slack, threshold) = (_mm256_set1_ps(ROUNDING_SLACK), _mm256_set1_ps(query.threshold));
        let blocks = rows.len() / 8;
        for block in 0..blocks {
            let first = block * 8;
            prefetch(rows.codes, first * dim, (first + 8) * dim);
            let dots = dots8::<D>(dim, &rows.codes[first * dim..(first + 8) * dim], &probe, query);
            // SAFETY: `first + 8 <= rows.len()`, the length of both arrays.
            let (scale, l1_norm) = unsafe {
                (
                    _mm256_loadu_ps(rows.scales.as_ptr().add(first)),
                    _mm256_loadu_ps(rows.l1_norms.as_ptr().add(first)),
                )
            };
            // `passes`, operation for operation.
            let estimate = _mm256_mul_ps(_mm256_mul_ps(scale, query_scale), _mm256_cvtepi32_ps(dots));
            let bound = _mm256_add_ps(
                _mm256_add_ps(
                    _mm256_mul_ps(
                        half,
                        _mm256_add_ps(_mm256_mul_ps(query_scale, l1_norm), _mm256_mul_ps(scale, query_l1)),
                    ),
                    _mm256_mul_ps(_mm256_mul_ps(dim_term, scale), query_scale),
                ),
                slack,
            );
            let passed = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_add_ps(estimate, bound), threshold);
            let mut passing = _mm256_movemask_ps(passed) as u32;
            while passing != 0 {
                out.push(rows.first + first + passing.trailing_zeros() as usize);
                passing &= passing - 1;
            }
        }
        portable::any(dim, rows.slice(dim, blocks * 8, rows.len()), query, out);
    }

    /// The probe's first `16·⌊dim/16⌋` codes widened to i16, sixteen per vector.
    #[target_feature(enable = "avx2")]
    fn widen(dim: usize, query: &Query) -> Vec<__m256i> {
        query.codes[..dim / 16 * 16]
            .chunks_exact(16)
            // SAFETY: each chunk is 16 bytes long.
            .map(|chunk| _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) }))
            .collect()
    }

    /// The int8 dot products of eight consecutive rows (`block`, `8·dim` codes) with the probe
    /// (`probe` from [`widen`]), lane `r` for row `r`. `D` is 0 or `dim`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn dots8<const D: usize>(dim: usize, block: &[i8], probe: &[__m256i], query: &Query) -> __m256i {
        let dim = if D == 0 { dim } else { D };
        let full = dim / 16;
        let probe = &probe[..full];
        let tail_probe = &query.codes[full * 16..dim];
        let mut sums = [_mm256_setzero_si256(); 8];
        let mut tails = [0i32; 8];
        for r in 0..8 {
            let row = &block[r * dim..(r + 1) * dim];
            for (chunk, probe) in row.chunks_exact(16).zip(probe) {
                // SAFETY: `chunk` is 16 bytes long.
                let codes = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
                sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(_mm256_cvtepi8_epi16(codes), *probe));
            }
            if !tail_probe.is_empty() {
                tails[r] = super::dot_i8(&row[full * 16..], tail_probe);
            }
        }
        // SAFETY: `tails` holds eight i32.
        let tails = unsafe { _mm256_loadu_si256(tails.as_ptr().cast()) };
        _mm256_add_epi32(sum8(sums), tails)
    }

    /// As [`sum16`] for eight vectors of eight i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum8(v: [__m256i; 8]) -> __m256i {
        let pair32 = |a, b| _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
        let pair64 = |a, b| _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
        let t: [__m256i; 4] = std::array::from_fn(|i| pair32(v[2 * i], v[2 * i + 1]));
        let (u0, u1) = (pair64(t[0], t[1]), pair64(t[2], t[3]));
        _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(u0, u1), _mm256_permute2x128_si256::<0x31>(u0, u1))
    }

    /// The int8 dot product of every row in whole blocks (`codes.len() / dim` rounded down to
    /// the block size) by the AVX-512 VNNI kernel, for the tests.
    #[cfg(test)]
    pub fn dots_avx512vnni(dim: usize, codes: &[i8], query: &Query) -> Vec<i32> {
        assert!(super::Kernel::Avx512Vnni.is_available() && query.codes.len() >= dim);
        let blocks = codes.chunks_exact(16 * dim);
        let dots = blocks.flat_map(|block| {
            let mut lanes = [0i32; 16];
            // SAFETY: the CPU has AVX-512 F, BW and VNNI (asserted); `block` is 16 rows and
            // `query.codes` is padded by `Query::new`. The store writes the 16 lanes.
            unsafe {
                let dots = match dim {
                    128 => dots16::<128>(dim, block, query),
                    192 => dots16::<192>(dim, block, query),
                    512 => dots16::<512>(dim, block, query),
                    _ => dots16::<0>(dim, block, query),
                };
                _mm512_storeu_si512(lanes.as_mut_ptr().cast(), dots);
            }
            lanes
        });
        dots.collect()
    }

    /// As [`dots_avx512vnni`] for the AVX2 kernel.
    #[cfg(test)]
    pub fn dots_avx2(dim: usize, codes: &[i8], query: &Query) -> Vec<i32> {
        assert!(super::Kernel::Avx2.is_available() && query.codes.len() >= dim);
        let blocks = codes.chunks_exact(8 * dim);
        let dots = blocks.flat_map(|block| {
            let mut lanes = [0i32; 8];
            // SAFETY: the CPU has AVX2 (asserted); the store writes the 8 lanes.
            unsafe {
                let probe = widen(dim, query);
                let dots = match dim {
                    128 => dots8::<128>(dim, block, &probe, query),
                    192 => dots8::<192>(dim, block, &probe, query),
                    512 => dots8::<512>(dim, block, &probe, query),
                    _ => dots8::<0>(dim, block, &probe, query),
                };
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), dots);
            }
            lanes
        });
        dots.collect()
    }
}

/// The int8 dot product of every row in whole blocks of the kernel (16 rows for AVX-512, 8 for
/// AVX2, 1 for the portable loop), for the tests.
#[cfg(test)]
pub(crate) fn block_dots(kernel: Kernel, dim: usize, codes: &[i8], query: &Query) -> Vec<i32> {
    match kernel {
        Kernel::Portable => codes.chunks_exact(dim).map(|row| dot_i8(row, &query.codes[..dim])).collect(),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => x86::dots_avx2(dim, codes, query),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => x86::dots_avx512vnni(dim, codes, query),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("{} is not available on this CPU", kernel.name()),
    }
}
