//! `unsafe` code (with `ntt.rs`, `poly_ops.rs` and `ypir/simd.rs`): the first dimension's inner product, in AVX2 and
//! AVX-512, chosen at run time.
//!
//! [`row_dots`] has three implementations that give the same words: the portable one
//! (spiral-rs's scalar kernel, u128 sums), AVX2 (four 64-bit lanes) and AVX-512F (eight). The
//! default build's baseline is x86-64-v3, so AVX2 is there on every CPU it runs on; AVX-512 is
//! used when the CPU has it. The SIMD kernels are `#[target_feature]` functions reached only
//! through a [`Kernel`], and a `Kernel` is made only after the CPU was seen to have its
//! instructions ([`Kernel::detected`], once per process, or [`Kernel::force`], which tests and
//! benches use to compare the paths and which refuses a kernel the CPU lacks).
//!
//! IFMA (`vpmadd52luq`/`vpmadd52huq`) does not help here: residues have 28 bits, so a product
//! has 56, above IFMA's 52-bit halves. Each product would take two multiply-adds (low and high
//! 52 bits) into two accumulators, plus masking the packed words to 52 bits, where
//! `vpmuludq` ignores the high halves for free and one add follows it.
//!
//! Every other file but `ntt.rs`, `poly_ops.rs` and `ypir/simd.rs` is under
//! `unsafe_code = "forbid"` (pir-core: `deny`, allowed only in those four).
#![allow(unsafe_code)]

use std::{fmt, sync::OnceLock};

use spiral_rs::{arith::barrett_coeff_u64, params::Params};

/// An implementation of the first dimension's inner product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Scalar code for any CPU (spiral-rs's kernel: u128 sums, one reduction per row).
    Portable,
    /// AVX2: four 32 x 32-bit products per instruction in 64-bit lanes.
    Avx2,
    /// AVX-512F: eight 32 x 32-bit products per instruction in 64-bit lanes.
    Avx512,
}

impl KernelKind {
    /// Every kind, the slowest first.
    pub const ALL: [KernelKind; 3] = [KernelKind::Portable, KernelKind::Avx2, KernelKind::Avx512];

    /// Its short name: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Portable => "portable",
            KernelKind::Avx2 => "avx2",
            KernelKind::Avx512 => "avx512",
        }
    }

    /// Whether this CPU (and its operating system) runs it.
    fn supported(self) -> bool {
        match self {
            KernelKind::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2 | KernelKind::Avx512 => false,
        }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A first-dimension kernel this CPU runs. Made only by [`Kernel::detected`] and
/// [`Kernel::force`], which check the CPU's features first: holding one is what makes calling
/// its instructions sound.
///
/// Every kernel gives the same answer bytes; the choice is speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel(KernelKind);

impl Kernel {
    /// The fastest kernel this CPU runs (AVX-512, else AVX2, else portable), detected once per
    /// process: what [`Database::answer_batch`](super::Database::answer_batch) uses.
    pub fn detected() -> Self {
        static DETECTED: OnceLock<Kernel> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let fastest = KernelKind::ALL.into_iter().rev().find_map(Kernel::force);
            fastest.unwrap_or(Kernel(KernelKind::Portable))
        })
    }

    /// The kernel `kind`, or `None` when this CPU lacks its instructions (never a fault): for
    /// comparing the paths in tests and benches.
    pub fn force(kind: KernelKind) -> Option<Self> {
        kind.supported().then_some(Kernel(kind))
    }

    /// Every kernel this CPU runs, the slowest (portable) first.
    pub fn available() -> impl Iterator<Item = Kernel> {
        KernelKind::ALL.into_iter().filter_map(Kernel::force)
    }

    /// Which implementation it is.
    pub fn kind(self) -> KernelKind {
        self.0
    }
}

/// One database row (`dim0` packed words: first CRT residue low, second high) against each
/// query's reoriented vector for this coefficient (`2 * dim0` packed words, two per row entry),
/// giving per query the four sums `[a0 * b mod q0, a1 * b mod q0, a0 * b mod q1, a1 * b mod q1]`.
///
/// Every kernel gives the same words: each computes the exact sums, reduced to `[0, q)`.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn row_dots(
    kernel: Kernel,
    sp: &Params,
    row: &[u64],
    a: &[&[u64]],
    out: &mut [[u64; 4]],
) {
    // The SIMD kernels read the row 4 entries (AVX-512) or 2 (AVX2) at a time, each against its
    // two query words. Database rows have 2^nu_1 >= 4 entries and query vectors twice that, so
    // every valid parameter set passes; any other shape takes the portable path.
    let whole = row.len().is_multiple_of(4) && a.iter().all(|v| v.len() == 2 * row.len());
    #[cfg(target_arch = "x86_64")]
    match kernel.0 {
        // SAFETY: a `Kernel` of this kind exists only after `KernelKind::supported` saw the
        // CPU's avx512f (`Kernel::force`), and `whole` is the shape the kernel's loads need.
        KernelKind::Avx512 if whole => return unsafe { row_dots_avx512(sp, row, a, out) },
        // SAFETY: as above, with avx2.
        KernelKind::Avx2 if whole => return unsafe { row_dots_avx2(sp, row, a, out) },
        _ => {}
    }
    row_dots_portable(sp, row, a, out)
}

/// `x + y mod q_k`, both below `q_k`.
fn add_mod(sp: &Params, x: u64, y: u64, k: usize) -> u64 {
    let s = x + y;
    if s >= sp.moduli[k] {
        s - sp.moduli[k]
    } else {
        s
    }
}

/// [`row_dots`] in AVX2. Residues are below 2^28, so each product is below 2^56 and a 64-bit
/// lane adds 256 of them without overflow; lanes are reduced (Barrett) every `CHUNK` row
/// entries.
///
/// # Safety
///
/// The CPU has AVX2, `row.len()` is even and every `a[i].len()` is `2 * row.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_dots_avx2(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi64, _mm256_castsi128_si256,
        _mm256_loadu_si256, _mm256_mul_epu32, _mm256_permute4x64_epi64, _mm256_setzero_si256,
        _mm256_srli_epi64, _mm256_storeu_si256,
    };
    /// Row entries per flush: each of the 4 lanes then holds 256 products.
    const CHUNK: usize = 512;
    let reduce = |x: u64, k: usize| barrett_coeff_u64(sp, x, k);
    for (v, o) in a.iter().zip(out.iter_mut()) {
        let mut acc = [0u64; 4];
        for (rc, vc) in row.chunks(CHUNK).zip(v.chunks(2 * CHUNK)) {
            let (mut lo, mut hi) = ([0u64; 4], [0u64; 4]);
            // SAFETY: every load reads 16 (row) or 32 (query) bytes inside `rc` / `vc`: j + 1 <
            // rc.len() (the row length is even, as the caller guarantees, and so is CHUNK) and
            // 2 * j + 3 < vc.len() = 2 * rc.len(). Unaligned loads and stores; the caller
            // guarantees the CPU has AVX2.
            unsafe {
                let mut acc_lo = _mm256_setzero_si256();
                let mut acc_hi = _mm256_setzero_si256();
                for j in (0..rc.len()).step_by(2) {
                    let b = _mm_loadu_si128(rc.as_ptr().add(j).cast::<__m128i>());
                    // [b_j, b_j, b_j+1, b_j+1] against [a0_j, a1_j, a0_j+1, a1_j+1].
                    let b = _mm256_permute4x64_epi64::<0b01_01_00_00>(_mm256_castsi128_si256(b));
                    let av = _mm256_loadu_si256(vc.as_ptr().add(2 * j).cast::<__m256i>());
                    acc_lo = _mm256_add_epi64(acc_lo, _mm256_mul_epu32(av, b));
                    acc_hi = _mm256_add_epi64(
                        acc_hi,
                        _mm256_mul_epu32(_mm256_srli_epi64::<32>(av), _mm256_srli_epi64::<32>(b)),
                    );
                }
                _mm256_storeu_si256(lo.as_mut_ptr().cast::<__m256i>(), acc_lo);
                _mm256_storeu_si256(hi.as_mut_ptr().cast::<__m256i>(), acc_hi);
            }
            let sums = [(lo, 0, 0), (lo, 1, 0), (hi, 0, 1), (hi, 1, 1)];
            for (slot, (lanes, first, k)) in acc.iter_mut().zip(sums) {
                let s = add_mod(sp, reduce(lanes[first], k), reduce(lanes[first + 2], k), k);
                *slot = add_mod(sp, *slot, s, k);
            }
        }
        *o = acc;
    }
}

/// [`row_dots`] in AVX-512F: the AVX2 kernel's math on eight lanes, four row entries per step,
/// for up to four queries at once (each step's row words are loaded and spread once for all of
/// them; 32 registers hold their accumulators).
///
/// # Safety
///
/// The CPU has AVX-512F, `row.len()` is a multiple of 4 and every `a[i].len()` is
/// `2 * row.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_dots_avx512(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    for (block, o) in a.chunks(4).zip(out.chunks_mut(4)) {
        let n = block.len().min(o.len());
        let (block, o) = (&block[..n], &mut o[..n]);
        // SAFETY: the caller's guarantees, for these queries.
        unsafe {
            match n {
                4 => row_dots_avx512_block::<4>(sp, row, block, o),
                3 => row_dots_avx512_block::<3>(sp, row, block, o),
                2 => row_dots_avx512_block::<2>(sp, row, block, o),
                _ => row_dots_avx512_block::<1>(sp, row, block, o),
            }
        }
    }
}

/// [`row_dots_avx512`] for `Q` queries. A sum's four lanes hold `CHUNK / 4` products each: 256
/// products below 2^56 in all, so they add up in a u64 before one Barrett reduction per sum and
/// chunk.
///
/// # Safety
///
/// As [`row_dots_avx512`], and `a.len()` and `out.len()` are `Q`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_dots_avx512_block<const Q: usize>(
    sp: &Params,
    row: &[u64],
    a: &[&[u64]],
    out: &mut [[u64; 4]],
) {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm512_add_epi64, _mm512_castsi256_si512, _mm512_loadu_si512,
        _mm512_mul_epu32, _mm512_permutexvar_epi64, _mm512_set_epi64, _mm512_setzero_si512,
        _mm512_srli_epi64, _mm512_storeu_si512,
    };
    /// Row entries per flush: each sum's 4 lanes then hold 256 products together.
    const CHUNK: usize = 256;
    let reduce = |x: u64, k: usize| barrett_coeff_u64(sp, x, k);
    let mut acc = [[0u64; 4]; Q];
    for (c, rc) in row.chunks(CHUNK).enumerate() {
        let (mut lo, mut hi) = ([[0u64; 8]; Q], [[0u64; 8]; Q]);
        // SAFETY: every load reads 32 (row) or 64 (query) bytes inside `row` / `a[q]`: with
        // i = c * CHUNK + j, i + 3 < row.len() (the row length is a multiple of 4, as the caller
        // guarantees, and so is CHUNK) and 2 * i + 7 < a[q].len() = 2 * row.len(); q < Q =
        // a.len(). Unaligned loads and stores; the caller guarantees the CPU has AVX-512F.
        unsafe {
            // Lane l of a step's query words belongs to row entry j + l / 2.
            let spread = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
            let mut acc_lo = [_mm512_setzero_si512(); Q];
            let mut acc_hi = [_mm512_setzero_si512(); Q];
            let vs: [*const u64; Q] = std::array::from_fn(|q| a[q].as_ptr().add(2 * c * CHUNK));
            for j in (0..rc.len()).step_by(4) {
                let b = _mm256_loadu_si256(rc.as_ptr().add(j).cast::<__m256i>());
                // [b_j, b_j, .., b_j+3, b_j+3] against [a0_j, a1_j, .., a0_j+3, a1_j+3].
                let b = _mm512_permutexvar_epi64(spread, _mm512_castsi256_si512(b));
                let b_hi = _mm512_srli_epi64::<32>(b);
                for q in 0..Q {
                    let av = _mm512_loadu_si512(vs[q].add(2 * j).cast());
                    acc_lo[q] = _mm512_add_epi64(acc_lo[q], _mm512_mul_epu32(av, b));
                    acc_hi[q] = _mm512_add_epi64(
                        acc_hi[q],
                        _mm512_mul_epu32(_mm512_srli_epi64::<32>(av), b_hi),
                    );
                }
            }
            for q in 0..Q {
                _mm512_storeu_si512(lo[q].as_mut_ptr().cast(), acc_lo[q]);
                _mm512_storeu_si512(hi[q].as_mut_ptr().cast(), acc_hi[q]);
            }
        }
        // Lanes 0, 2, 4, 6 hold a0's products, 1, 3, 5, 7 a1's; wrapping like the lanes (the
        // bound above keeps it exact for residues below the moduli).
        let lanes = |l: &[u64; 8], first: usize| {
            l[first]
                .wrapping_add(l[first + 2])
                .wrapping_add(l[first + 4])
                .wrapping_add(l[first + 6])
        };
        for q in 0..Q {
            let sums = [
                (&lo[q], 0, 0),
                (&lo[q], 1, 0),
                (&hi[q], 0, 1),
                (&hi[q], 1, 1),
            ];
            for (slot, (l, first, k)) in acc[q].iter_mut().zip(sums) {
                *slot = add_mod(sp, *slot, reduce(lanes(l, first), k), k);
            }
        }
    }
    out.copy_from_slice(&acc);
}

/// [`row_dots`] in scalar code: spiral-rs's kernel.
fn row_dots_portable(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    let (m0, m1) = (sp.moduli[0] as u128, sp.moduli[1] as u128);
    for (v, o) in a.iter().zip(out.iter_mut()) {
        let (mut n0_0, mut n0_1, mut n1_0, mut n1_1) = (0u128, 0u128, 0u128, 0u128);
        for (&b, pair) in row.iter().zip(v.chunks_exact(2)) {
            let (b_lo, b_hi) = (b & 0xffff_ffff, b >> 32);
            let (a0, a1) = (pair[0], pair[1]);
            n0_0 += ((a0 & 0xffff_ffff) * b_lo) as u128;
            n0_1 += ((a1 & 0xffff_ffff) * b_lo) as u128;
            n1_0 += ((a0 >> 32) * b_hi) as u128;
            n1_1 += ((a1 >> 32) * b_hi) as u128;
        }
        *o = [
            (n0_0 % m0) as u64,
            (n0_1 % m0) as u64,
            (n1_0 % m1) as u64,
            (n1_1 % m1) as u64,
        ];
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::pir::{
        params::SchemeParams,
        ring::{MODULI, PACKED_OFFSET_2, spiral_params},
    };

    /// The four sums by the definition, in u128.
    fn reference_dots(row: &[u64], v: &[u64]) -> [u64; 4] {
        let mut s = [0u128; 4];
        for (j, &b) in row.iter().enumerate() {
            let (a0, a1) = (v[2 * j], v[2 * j + 1]);
            let lo = |x: u64| (x & 0xffff_ffff) as u128;
            let hi = |x: u64| (x >> 32) as u128;
            s[0] += lo(a0) * lo(b);
            s[1] += lo(a1) * lo(b);
            s[2] += hi(a0) * hi(b);
            s[3] += hi(a1) * hi(b);
        }
        [
            (s[0] % MODULI[0] as u128) as u64,
            (s[1] % MODULI[0] as u128) as u64,
            (s[2] % MODULI[1] as u128) as u64,
            (s[3] % MODULI[1] as u128) as u64,
        ]
    }

    /// How a test's words are drawn.
    #[derive(Clone, Copy, Debug)]
    enum Words {
        Random,
        /// Every residue at its modulus - 1: the worst case for the lanes' lazy reduction.
        Largest,
        /// Largest and zero by turns, so lanes of one step differ.
        Alternating,
        Zero,
    }

    /// Every kernel this CPU runs, on `queries` random query vectors against one row of `dim0`
    /// entries, checked against the definition (and so against each other).
    fn check_every_kernel(rng: &mut StdRng, dim0: usize, queries: usize, words: Words) {
        let sp = spiral_params(&SchemeParams::danger_test_only_small()).unwrap();
        let pack = |lo: u64, hi: u64| lo | (hi << PACKED_OFFSET_2);
        let mut n = 0usize;
        let mut word = || {
            n += 1;
            match words {
                Words::Random => pack(rng.gen_range(0..MODULI[0]), rng.gen_range(0..MODULI[1])),
                Words::Largest => pack(MODULI[0] - 1, MODULI[1] - 1),
                Words::Alternating if n.is_multiple_of(2) => pack(MODULI[0] - 1, MODULI[1] - 1),
                Words::Alternating | Words::Zero => 0,
            }
        };
        let row: Vec<u64> = (0..dim0).map(|_| word()).collect();
        let vs: Vec<Vec<u64>> = (0..queries)
            .map(|_| (0..2 * dim0).map(|_| word()).collect())
            .collect();
        let a: Vec<&[u64]> = vs.iter().map(Vec::as_slice).collect();
        let expected: Vec<[u64; 4]> = vs.iter().map(|v| reference_dots(&row, v)).collect();
        for kernel in Kernel::available() {
            let mut out = vec![[u64::MAX; 4]; queries];
            row_dots(kernel, sp, &row, &a, &mut out);
            assert_eq!(
                out,
                expected,
                "{} kernel, dim0 {dim0}, {queries} queries, {words:?} words",
                kernel.kind()
            );
        }
    }

    #[test]
    fn every_kernel_matches_the_definition_at_every_row_length_and_the_largest_residues() {
        let mut rng = StdRng::seed_from_u64(7);
        // Every supported first dimension size (4 is the smallest row), and around the AVX-512
        // (256) and AVX2 (512) chunks: one step less, exactly, one step more, several chunks.
        let lengths = [
            4usize, 8, 16, 64, 128, 252, 256, 260, 508, 512, 516, 768, 1020, 1024, 1028, 2048,
        ];
        for dim0 in lengths {
            for words in [
                Words::Random,
                Words::Largest,
                Words::Alternating,
                Words::Zero,
            ] {
                // The AVX-512 kernel takes queries 4 at a time, then the rest.
                for queries in [1, 2, 3, 4, 5, 9] {
                    check_every_kernel(&mut rng, dim0, queries, words);
                }
            }
        }
        check_every_kernel(&mut rng, 64, 0, Words::Random);
    }

    #[test]
    fn rows_the_simd_kernels_cannot_take_fall_back_to_the_same_words() {
        let mut rng = StdRng::seed_from_u64(8);
        for dim0 in [1usize, 2, 3, 6, 10, 257] {
            for words in [Words::Random, Words::Largest] {
                check_every_kernel(&mut rng, dim0, 2, words);
            }
        }
    }

    #[test]
    fn a_kernel_is_forced_only_when_the_cpu_runs_it() {
        assert_eq!(
            Kernel::force(KernelKind::Portable).map(Kernel::kind),
            Some(KernelKind::Portable)
        );
        for kind in KernelKind::ALL {
            assert_eq!(Kernel::force(kind).is_some(), kind.supported(), "{kind}");
        }
        let fastest = KernelKind::ALL.into_iter().rev().find(|k| k.supported());
        assert_eq!(Some(Kernel::detected().kind()), fastest);
        assert_eq!(
            Kernel::available().next().map(Kernel::kind),
            Some(KernelKind::Portable)
        );
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(
                Kernel::force(KernelKind::Avx512).is_some(),
                std::arch::is_x86_feature_detected!("avx512f")
            );
            // The build's baseline is x86-64-v3: every CPU it runs on has AVX2.
            #[cfg(target_feature = "avx2")]
            assert!(Kernel::force(KernelKind::Avx2).is_some());
        }
    }
}
