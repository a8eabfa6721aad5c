//! The one `unsafe` code of the workspace: the first dimension's inner product, in AVX2.
//!
//! Every other file is under `unsafe_code = "forbid"` (pir-core: `deny`, allowed only here).
#![allow(unsafe_code)]

use spiral_rs::{arith::barrett_coeff_u64, params::Params};

/// One database row (`dim0` packed words: first CRT residue low, second high) against each
/// query's reoriented vector for this coefficient (`2 * dim0` packed words, two per row entry),
/// giving per query the four sums `[a0 * b mod q0, a1 * b mod q0, a0 * b mod q1, a1 * b mod q1]`.
///
/// Residues are below 2^28, so each product is below 2^56 and a 64-bit lane adds 256 of them
/// without overflow; lanes are reduced (Barrett) every `CHUNK` row entries.
#[cfg(target_feature = "avx2")]
pub(super) fn row_dots(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi64, _mm256_castsi128_si256,
        _mm256_loadu_si256, _mm256_mul_epu32, _mm256_permute4x64_epi64, _mm256_setzero_si256,
        _mm256_srli_epi64, _mm256_storeu_si256,
    };
    /// Row entries per flush: each of the 4 lanes then holds 256 products.
    const CHUNK: usize = 512;
    let reduce = |x: u64, k: usize| barrett_coeff_u64(sp, x, k);
    let add = |x: u64, y: u64, k: usize| {
        let s = x + y;
        if s >= sp.moduli[k] {
            s - sp.moduli[k]
        } else {
            s
        }
    };
    for (v, o) in a.iter().zip(out.iter_mut()) {
        debug_assert_eq!(v.len(), 2 * row.len());
        let mut acc = [0u64; 4];
        for (rc, vc) in row.chunks(CHUNK).zip(v.chunks(2 * CHUNK)) {
            let (mut lo, mut hi) = ([0u64; 4], [0u64; 4]);
            // SAFETY: every load reads 16 (row) or 32 (query) bytes inside `rc` / `vc`: j + 1 <
            // rc.len() (the row length, a power of two of at least 4, so chunks are even) and
            // 2 * j + 3 < vc.len() = 2 * rc.len(). Unaligned loads and stores; AVX2 is enabled
            // at compile time (this function only exists with target_feature = "avx2").
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
                let s = add(reduce(lanes[first], k), reduce(lanes[first + 2], k), k);
                *slot = add(*slot, s, k);
            }
        }
        *o = acc;
    }
}

/// Portable form of the AVX2 `row_dots` above (spiral-rs's scalar kernel).
#[cfg(not(target_feature = "avx2"))]
pub(super) fn row_dots(sp: &Params, row: &[u64], a: &[&[u64]], out: &mut [[u64; 4]]) {
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

    #[test]
    fn row_dots_match_the_definition_up_to_the_largest_rows_and_residues() {
        let sp = spiral_params(&SchemeParams::danger_test_only_small()).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let pack = |lo: u64, hi: u64| lo | (hi << PACKED_OFFSET_2);
        // Every supported first dimension size; the largest residues are the worst case for
        // the lanes' lazy reduction.
        for dim0 in [4usize, 64, 512, 1024, 2048] {
            for extreme in [false, true] {
                let mut word = || {
                    if extreme {
                        pack(MODULI[0] - 1, MODULI[1] - 1)
                    } else {
                        pack(rng.gen_range(0..MODULI[0]), rng.gen_range(0..MODULI[1]))
                    }
                };
                let row: Vec<u64> = (0..dim0).map(|_| word()).collect();
                let vs: Vec<Vec<u64>> = (0..3)
                    .map(|_| (0..2 * dim0).map(|_| word()).collect())
                    .collect();
                let a: Vec<&[u64]> = vs.iter().map(Vec::as_slice).collect();
                let mut out = vec![[0u64; 4]; a.len()];
                row_dots(sp, &row, &a, &mut out);
                for (v, got) in vs.iter().zip(&out) {
                    assert_eq!(
                        *got,
                        reference_dots(&row, v),
                        "dim0 {dim0}, extreme {extreme}"
                    );
                }
            }
        }
    }
}
