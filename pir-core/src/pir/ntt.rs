//! The ring's negacyclic NTT (d = 2048, both CRT moduli) for query expansion and folding: with
//! the AVX-512 kernel, an AVX-512 transform of our own; otherwise spiral-rs's (AVX2 in the
//! default x86-64-v3 build). Both give the same words, bit for bit.
//!
//! spiral-rs's transforms are Harvey butterflies with lazy reduction; its AVX2 build vectorises
//! the stages whose butterflies are at least 4 apart and runs the last two stages (distance 2
//! and 1), a fifth of the work, in scalar code. Ours runs every stage 8 lanes wide: distances
//! of 8 and more as spiral-rs does, and distances 4, 2 and 1 by transposing 16 coefficients
//! into a vector of butterfly tops and one of bottoms. The intermediate words are not always
//! reduced alike in spiral-rs's two code paths (its vector stages subtract 2p when a word is
//! above 2p, its scalar ones when it is at or above, and its forward transform's last
//! reduction leaves a word equal to p unreduced), so ours follows, stage by stage, exactly the
//! comparisons of the path spiral-rs runs there: the outputs are its outputs, including the
//! rare unreduced p. `tests` below compare them on random and extreme inputs.
//!
//! With `kernel.rs`, `poly_ops.rs` and `ypir/simd.rs`, the only files allowed `unsafe` code (the
//! intrinsics' loads and stores, and calling the AVX-512 functions once a [`Kernel`] says the
//! CPU runs them).
#![allow(unsafe_code)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use spiral_rs::{
    aligned_memory::AlignedMemory64,
    arith::exponentiate_uint_mod,
    ntt::{ntt_forward, ntt_inverse},
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw},
};

use super::{
    kernel::{Kernel, KernelKind},
    poly_ops,
};
use crate::error::{CoreError, Result};

/// Forward transform of one polynomial's residues (`crt_count * poly_len` words, each residue
/// reduced), in place. spiral-rs's transforms need the words 32-byte aligned (spiral-rs's
/// matrices and [`Scratch`] are).
pub(super) fn forward(kernel: Kernel, sp: &Params, poly: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if kernel.kind() == KernelKind::Avx512 && sp.poly_len >= 16 {
        // SAFETY: a `Kernel` of kind AVX-512 exists only if the CPU runs AVX-512F.
        unsafe { avx512::forward(sp, poly) };
        return;
    }
    let _ = kernel;
    ntt_forward(sp, poly);
}

/// Inverse transform of one polynomial's residues, in place.
pub(super) fn inverse(kernel: Kernel, sp: &Params, poly: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if kernel.kind() == KernelKind::Avx512 && sp.poly_len >= 16 {
        // SAFETY: as in `forward`.
        unsafe { avx512::inverse(sp, poly) };
        return;
    }
    let _ = kernel;
    ntt_inverse(sp, poly);
}

/// spiral-rs's `to_ntt`: every polynomial of `b` reduced into each CRT residue and transformed.
pub(super) fn to_ntt(kernel: Kernel, a: &mut PolyMatrixNTT, b: &PolyMatrixRaw) {
    let sp = a.params;
    for r in 0..a.rows {
        for c in 0..a.cols {
            let dst = a.get_poly_mut(r, c);
            poly_ops::reduce_into_residues(kernel, sp, dst, b.get_poly(r, c));
            forward(kernel, sp, dst);
        }
    }
}

/// spiral-rs's `to_ntt_no_reduce`: for words already below both moduli (gadget digits).
pub(super) fn to_ntt_no_reduce(kernel: Kernel, a: &mut PolyMatrixNTT, b: &PolyMatrixRaw) {
    let sp = a.params;
    let n = sp.poly_len;
    for r in 0..a.rows {
        for c in 0..a.cols {
            let src = b.get_poly(r, c);
            let dst = a.get_poly_mut(r, c);
            for m in 0..sp.crt_count {
                dst[m * n..(m + 1) * n].copy_from_slice(src);
            }
            forward(kernel, sp, dst);
        }
    }
}

/// An aligned buffer for one polynomial's residues, reused across [`from_ntt`] calls.
pub(super) struct Scratch(AlignedMemory64);

impl Scratch {
    pub(super) fn new(sp: &Params) -> Self {
        Self(AlignedMemory64::new(sp.crt_count * sp.poly_len))
    }
}

/// spiral-rs's `from_ntt`: every polynomial of `b` transformed back and its residues composed
/// into one word mod q.
pub(super) fn from_ntt(
    kernel: Kernel,
    a: &mut PolyMatrixRaw,
    b: &PolyMatrixNTT,
    scratch: &mut Scratch,
) {
    let sp = a.params;
    for r in 0..a.rows {
        for c in 0..a.cols {
            from_ntt_poly(kernel, sp, a.get_poly_mut(r, c), b.get_poly(r, c), scratch);
        }
    }
}

/// [`from_ntt`] of one polynomial: `out` (`poly_len` words mod q) from `ntt` (its residues).
pub(super) fn from_ntt_poly(
    kernel: Kernel,
    sp: &Params,
    out: &mut [u64],
    ntt: &[u64],
    scratch: &mut Scratch,
) {
    let buf = scratch.0.as_mut_slice();
    buf.copy_from_slice(ntt);
    inverse(kernel, sp, buf);
    poly_ops::compose(kernel, sp, out, buf);
}

/// The automorphism X -> X^t of an NTT-form polynomial, without leaving the NTT domain: the
/// transform evaluates at the odd powers of a 2d-th root of unity, and a(X^t) at a point w is
/// a at w^t, another of those points, so each residue's words are permuted. `out` is congruent,
/// word for word, to the forward transform of spiral-rs's `automorph` of the polynomial, at the
/// cost of a copy instead of two transforms. `perm` is [`automorph_permutation`]'s for t.
pub(super) fn automorph_ntt(sp: &Params, perm: &[u16], out: &mut [u64], ntt: &[u64]) {
    let n = sp.poly_len;
    for m in 0..sp.crt_count {
        let (dst, src) = (&mut out[m * n..(m + 1) * n], &ntt[m * n..(m + 1) * n]);
        for (d, &from) in dst.iter_mut().zip(&perm[m * n..(m + 1) * n]) {
            *d = src[from as usize];
        }
    }
}

/// For [`automorph_ntt`]: per residue, the slot of the input each output slot takes
/// ([`slot_permutation`]), computed once per (ring, t) from the transform of X. An internal
/// error if t has none (an even t).
pub(super) fn automorph_permutation(sp: &Params, t: usize) -> Result<Arc<[u16]>> {
    /// (poly_len, moduli, t), and the permutation, if t has one.
    type Tables = HashMap<(usize, Vec<u64>, usize), Option<Arc<[u16]>>>;
    static TABLES: OnceLock<Mutex<Tables>> = OnceLock::new();
    let n = sp.poly_len;
    let key = (n, sp.moduli[..sp.crt_count].to_vec(), t);
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tables
        .entry(key)
        .or_insert_with(|| {
            let mut x = AlignedMemory64::new(sp.crt_count * n);
            for m in 0..sp.crt_count {
                x.as_mut_slice()[m * n + 1] = 1;
            }
            ntt_forward(sp, x.as_mut_slice());
            let mut perm = Vec::with_capacity(sp.crt_count * n);
            for m in 0..sp.crt_count {
                let points = &x.as_slice()[m * n..(m + 1) * n];
                perm.extend(slot_permutation(points, sp.moduli[m], t as u64)?);
            }
            Some(perm.into())
        })
        .clone()
        .ok_or(CoreError::Internal(
            "an automorphism that does not permute the NTT's points",
        ))
}

/// The permutation of NTT slots that X -> X^t makes, for one residue mod `p` whose slots
/// evaluate at `points` (the transform of X): slot k of the transform of a(X^t) is a at
/// points[k]^t, which is the slot whose point that is. The points are the 2d-th roots of -1,
/// which X -> X^t permutes for an odd t; None for an even t, or more than 2^16 slots.
pub(super) fn slot_permutation(points: &[u64], p: u64, t: u64) -> Option<Vec<u16>> {
    let index: HashMap<u64, u16> = points
        .iter()
        .enumerate()
        .map(|(k, &w)| Some((w % p, u16::try_from(k).ok()?)))
        .collect::<Option<_>>()?;
    points
        .iter()
        .map(|&w| index.get(&exponentiate_uint_mod(w % p, t, p)).copied())
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use spiral_rs::params::Params;

    /// Eight lane indices as a vector (lane 0 first).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lanes(i: [i64; 8]) -> __m512i {
        _mm512_set_epi64(i[7], i[6], i[5], i[4], i[3], i[2], i[1], i[0])
    }

    /// The butterfly tops and bottoms of 16 coefficients at distance `t` (4, 2 or 1), and the
    /// lane indices that put them back.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transposition(t: usize) -> [__m512i; 4] {
        match t {
            4 => [
                lanes([0, 1, 2, 3, 8, 9, 10, 11]),
                lanes([4, 5, 6, 7, 12, 13, 14, 15]),
                lanes([0, 1, 2, 3, 8, 9, 10, 11]),
                lanes([4, 5, 6, 7, 12, 13, 14, 15]),
            ],
            2 => [
                lanes([0, 1, 4, 5, 8, 9, 12, 13]),
                lanes([2, 3, 6, 7, 10, 11, 14, 15]),
                lanes([0, 1, 8, 9, 2, 3, 10, 11]),
                lanes([4, 5, 12, 13, 6, 7, 14, 15]),
            ],
            _ => [
                lanes([0, 2, 4, 6, 8, 10, 12, 14]),
                lanes([1, 3, 5, 7, 9, 11, 13, 15]),
                lanes([0, 8, 1, 9, 2, 10, 3, 11]),
                lanes([4, 12, 5, 13, 6, 14, 7, 15]),
            ],
        }
    }

    /// The twiddles of the butterflies of 16 coefficients at distance `t` (4, 2 or 1), whose
    /// first group's table entry is `table[first]`: one entry per group, repeated across its
    /// `t` lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn twiddles(table: &[u64], first: usize, t: usize) -> __m512i {
        let w = |k: usize| table[first + k] as i64;
        match t {
            4 => lanes([w(0), w(0), w(0), w(0), w(1), w(1), w(1), w(1)]),
            2 => lanes([w(0), w(0), w(1), w(1), w(2), w(2), w(3), w(3)]),
            _ => {
                let eight = &table[first..first + 8];
                // SAFETY: `eight` is 8 words.
                unsafe { _mm512_loadu_si512(eight.as_ptr().cast()) }
            }
        }
    }

    /// The forward butterfly on 8 lanes. `at_or_above`: subtract 2p from a top at or above 2p
    /// (spiral-rs's scalar stages) rather than only above it (its vector stages).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn forward_butterfly(
        x: __m512i,
        y: __m512i,
        w: __m512i,
        w_prime: __m512i,
        p: __m512i,
        two_p: __m512i,
        at_or_above: bool,
    ) -> (__m512i, __m512i) {
        let big = if at_or_above {
            _mm512_cmpge_epu64_mask(x, two_p)
        } else {
            _mm512_cmpgt_epu64_mask(x, two_p)
        };
        let curr_x = _mm512_mask_sub_epi64(x, big, x, two_p);
        let q = _mm512_srli_epi64::<32>(_mm512_mul_epu32(y, w_prime));
        let q_new = _mm512_sub_epi64(_mm512_mul_epu32(y, w), _mm512_mul_epu32(q, p));
        (
            _mm512_add_epi64(curr_x, q_new),
            _mm512_add_epi64(curr_x, _mm512_sub_epi64(two_p, q_new)),
        )
    }

    /// The inverse butterfly on 8 lanes; `at_or_above` as for [`forward_butterfly`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn inverse_butterfly(
        x: __m512i,
        y: __m512i,
        w: __m512i,
        w_prime: __m512i,
        p: __m512i,
        two_p: __m512i,
        at_or_above: bool,
    ) -> (__m512i, __m512i) {
        let t = _mm512_add_epi64(_mm512_sub_epi64(two_p, y), x);
        let x2 = _mm512_slli_epi64::<1>(x);
        let big = if at_or_above {
            _mm512_cmpge_epu64_mask(x2, t)
        } else {
            _mm512_cmpgt_epu64_mask(x2, t)
        };
        let curr_x =
            _mm512_mask_sub_epi64(_mm512_add_epi64(x, y), big, _mm512_add_epi64(x, y), two_p);
        let h = _mm512_srli_epi64::<32>(_mm512_mul_epu32(t, w_prime));
        let odd = _mm512_test_epi64_mask(t, _mm512_set1_epi64(1));
        let new_x = _mm512_srli_epi64::<1>(_mm512_mask_add_epi64(curr_x, odd, curr_x, p));
        let new_y = _mm512_sub_epi64(_mm512_mul_epu32(t, w), _mm512_mul_epu32(h, p));
        (new_x, new_y)
    }

    /// Applies `butterfly` to every pair at distance `t` of `op` (`op.len()` a multiple of 16,
    /// `2 t` dividing it), group `g` with `w[m + g]`, `w_prime[m + g]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn stage(
        op: &mut [u64],
        t: usize,
        w_table: &[u64],
        w_prime_table: &[u64],
        butterfly: impl Fn(__m512i, __m512i, __m512i, __m512i) -> (__m512i, __m512i),
    ) {
        let n = op.len();
        let m = n / (2 * t);
        let ptr = op.as_mut_ptr();
        if t >= 8 {
            for g in 0..m {
                let w = _mm512_set1_epi64(w_table[m + g] as i64);
                let w_prime = _mm512_set1_epi64(w_prime_table[m + g] as i64);
                for j in (0..t).step_by(8) {
                    // SAFETY: 2 t g + j + t + 8 <= 2 t (g + 1) <= n.
                    unsafe {
                        let px = ptr.add(2 * t * g + j);
                        let py = px.add(t);
                        let (x, y) = butterfly(
                            _mm512_loadu_si512(px.cast()),
                            _mm512_loadu_si512(py.cast()),
                            w,
                            w_prime,
                        );
                        _mm512_storeu_si512(px.cast(), x);
                        _mm512_storeu_si512(py.cast(), y);
                    }
                }
            }
        } else {
            let [tops, bottoms, back_a, back_b] = transposition(t);
            for k in (0..n).step_by(16) {
                let first = m + k / (2 * t);
                // SAFETY: k + 16 <= n; the 16 coefficients hold 16 / (2 t) groups, the last
                // of which is group (k + 16) / (2 t) - 1 < m, so the table (2 m long) holds
                // their entries.
                unsafe {
                    let pa = ptr.add(k);
                    let pb = pa.add(8);
                    let a = _mm512_loadu_si512(pa.cast());
                    let b = _mm512_loadu_si512(pb.cast());
                    let (x, y) = butterfly(
                        _mm512_permutex2var_epi64(a, tops, b),
                        _mm512_permutex2var_epi64(a, bottoms, b),
                        twiddles(w_table, first, t),
                        twiddles(w_prime_table, first, t),
                    );
                    _mm512_storeu_si512(pa.cast(), _mm512_permutex2var_epi64(x, back_a, y));
                    _mm512_storeu_si512(pb.cast(), _mm512_permutex2var_epi64(x, back_b, y));
                }
            }
        }
    }

    /// Subtracts `bound` from every word above it, or at or above it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce_once(op: &mut [u64], bound: u64, at_or_above: bool) {
        let b = _mm512_set1_epi64(bound as i64);
        for chunk in op.chunks_exact_mut(8) {
            // SAFETY: a chunk is 8 words.
            unsafe {
                let x = _mm512_loadu_si512(chunk.as_ptr().cast());
                let big = if at_or_above {
                    _mm512_cmpge_epu64_mask(x, b)
                } else {
                    _mm512_cmpgt_epu64_mask(x, b)
                };
                _mm512_storeu_si512(
                    chunk.as_mut_ptr().cast(),
                    _mm512_mask_sub_epi64(x, big, x, b),
                );
            }
        }
    }

    /// spiral-rs's `ntt_forward` (AVX2 build), 8 lanes at a time.
    ///
    /// SAFETY: the CPU runs AVX-512F; `sp.poly_len >= 16`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(sp: &Params, all: &mut [u64]) {
        transform(sp, all, false)
    }

    /// spiral-rs's `ntt_inverse` (AVX2 build), 8 lanes at a time.
    ///
    /// SAFETY: as for [`forward`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn inverse(sp: &Params, all: &mut [u64]) {
        transform(sp, all, true)
    }

    /// Either transform, residue by residue: the forward one runs its stages from the widest
    /// distance down, the inverse one back up. spiral-rs's AVX2 build runs distances below 4 in
    /// scalar code (`>=`); its forward transform's last reduction is vector code (`>`), its
    /// inverse one's scalar in both builds (`>=`).
    #[target_feature(enable = "avx512f")]
    fn transform(sp: &Params, all: &mut [u64], inverse: bool) {
        let n = sp.poly_len;
        let log_n = sp.poly_len_log2;
        for c in 0..sp.crt_count {
            let op = &mut all[c * n..(c + 1) * n];
            let (w, w_prime) = if inverse {
                (
                    sp.get_ntt_inverse_table(c),
                    sp.get_ntt_inverse_prime_table(c),
                )
            } else {
                (
                    sp.get_ntt_forward_table(c),
                    sp.get_ntt_forward_prime_table(c),
                )
            };
            let modulus = sp.moduli[c];
            let p = _mm512_set1_epi64(modulus as i64);
            let two_p = _mm512_set1_epi64(2 * modulus as i64);
            for k in 0..log_n {
                let mm = if inverse { log_n - 1 - k } else { k };
                let t = n >> (mm + 1);
                let at_or_above = t < 4;
                if inverse {
                    stage(op, t, w, w_prime, |x, y, w, wp| {
                        inverse_butterfly(x, y, w, wp, p, two_p, at_or_above)
                    });
                } else {
                    stage(op, t, w, w_prime, |x, y, w, wp| {
                        forward_butterfly(x, y, w, wp, p, two_p, at_or_above)
                    });
                }
            }
            reduce_once(op, 2 * modulus, inverse);
            reduce_once(op, modulus, inverse);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::pir::{SchemeParams, ring::spiral_params};

    fn sp() -> &'static Params {
        spiral_params(&SchemeParams::danger_test_only_small()).unwrap()
    }

    /// Residue vectors to transform: random below each modulus, random small (gadget digits),
    /// zeros, and every word at its modulus minus one.
    fn inputs(sp: &Params) -> Vec<Vec<u64>> {
        let n = sp.poly_len;
        let mut rng = StdRng::seed_from_u64(17);
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(
                (0..sp.crt_count * n)
                    .map(|i| rng.gen_range(0..sp.moduli[i / n]))
                    .collect(),
            );
            out.push(
                (0..sp.crt_count * n)
                    .map(|_| rng.gen_range(0..1 << 14))
                    .collect(),
            );
        }
        out.push(vec![0; sp.crt_count * n]);
        out.push(
            (0..sp.crt_count * n)
                .map(|i| sp.moduli[i / n] - 1)
                .collect(),
        );
        out
    }

    fn aligned(words: &[u64]) -> AlignedMemory64 {
        let mut out = AlignedMemory64::new(words.len());
        out.as_mut_slice().copy_from_slice(words);
        out
    }

    #[test]
    fn every_kernel_transforms_like_spiral_rs() {
        let sp = sp();
        for kernel in Kernel::available() {
            for input in inputs(sp) {
                let (mut ours, mut theirs) = (aligned(&input), aligned(&input));
                forward(kernel, sp, ours.as_mut_slice());
                ntt_forward(sp, theirs.as_mut_slice());
                assert_eq!(ours.as_slice(), theirs.as_slice(), "forward, {kernel:?}");
                // The inverse, on the transform and on the raw input (any reduced words).
                for v in [theirs.as_slice().to_vec(), input.clone()] {
                    let (mut ours, mut theirs) = (aligned(&v), aligned(&v));
                    inverse(kernel, sp, ours.as_mut_slice());
                    ntt_inverse(sp, theirs.as_mut_slice());
                    assert_eq!(ours.as_slice(), theirs.as_slice(), "inverse, {kernel:?}");
                }
            }
        }
    }

    #[test]
    fn matrix_conversions_equal_spiral_rs() {
        let sp = sp();
        let mut rng = StdRng::seed_from_u64(5);
        let mut raw = PolyMatrixRaw::zero(sp, 2, 3);
        for w in raw.as_mut_slice() {
            *w = rng.r#gen::<u64>() % sp.modulus;
        }
        let mut digits = PolyMatrixRaw::zero(sp, 2, 3);
        for w in digits.as_mut_slice() {
            *w = rng.gen_range(0..1 << 14);
        }
        for kernel in Kernel::available() {
            let mut ours = PolyMatrixNTT::zero(sp, 2, 3);
            to_ntt(kernel, &mut ours, &raw);
            let theirs = raw.ntt();
            assert_eq!(ours.as_slice(), theirs.as_slice(), "{kernel:?}");

            let mut back = PolyMatrixRaw::zero(sp, 2, 3);
            from_ntt(kernel, &mut back, &theirs, &mut Scratch::new(sp));
            assert_eq!(back.as_slice(), theirs.raw().as_slice(), "{kernel:?}");

            let mut ours = PolyMatrixNTT::zero(sp, 2, 3);
            to_ntt_no_reduce(kernel, &mut ours, &digits);
            let mut theirs = PolyMatrixNTT::zero(sp, 2, 3);
            spiral_rs::poly::to_ntt_no_reduce(&mut theirs, &digits);
            assert_eq!(ours.as_slice(), theirs.as_slice(), "{kernel:?}");
        }
    }

    /// The NTT-domain automorphism is spiral-rs's automorphism between the transforms, word for
    /// word modulo each residue, for every t expansion uses (2^k + 1) and for X -> X^-1; an even t
    /// has no permutation.
    #[test]
    fn automorphism_in_the_ntt_domain_is_spiral_rs_automorph() {
        let sp = sp();
        let n = sp.poly_len;
        let mut rng = StdRng::seed_from_u64(5);
        let mut ts: Vec<usize> = (0..n.trailing_zeros()).map(|r| n / (1 << r) + 1).collect();
        ts.extend([3, 5, 2 * n - 1]);
        for t in ts {
            let perm = automorph_permutation(sp, t).unwrap();
            let mut ntt = PolyMatrixNTT::zero(sp, 1, 1);
            for (i, w) in ntt.as_mut_slice().iter_mut().enumerate() {
                *w = rng.gen_range(0..sp.moduli[i / n]);
            }
            let mut raw = PolyMatrixRaw::zero(sp, 1, 1);
            let mut scratch = Scratch::new(sp);
            let kernel = Kernel::force(KernelKind::Portable).unwrap();
            from_ntt(kernel, &mut raw, &ntt, &mut scratch);
            let mut auto = PolyMatrixRaw::zero(sp, 1, 1);
            spiral_rs::poly::automorph(&mut auto, &raw, t);
            let mut want = PolyMatrixNTT::zero(sp, 1, 1);
            to_ntt(kernel, &mut want, &auto);
            let mut got = vec![0; 2 * n];
            automorph_ntt(sp, &perm, &mut got, ntt.as_slice());
            for (i, (g, w)) in got.iter().zip(want.as_slice()).enumerate() {
                let p = sp.moduli[i / n];
                assert_eq!(g % p, w % p, "t = {t}, word {i}");
            }
        }
        assert!(automorph_permutation(sp, 2).is_err());
    }
}
