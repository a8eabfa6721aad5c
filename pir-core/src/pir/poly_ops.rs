//! Word-wise arithmetic on the ring's polynomials, around the NTT: reducing words into each CRT
//! residue, products of NTT-form matrices, and composing the two residues back into one word
//! mod q. With the AVX-512 kernel, 8 lanes of our own; otherwise spiral-rs's functions.
//!
//! Every result is the canonical word (below its modulus), as spiral-rs's Barrett reductions
//! and its `crt_compose` leave it, so both paths give the same words bit for bit (`tests`
//! below): answers stay byte-identical to spiral-rs's `process_query`. The vector path needs
//! only 32 x 32-bit multiplies, since both moduli are below 2^28:
//!
//! - a word x reduces as `hi * (2^32 mod p) + lo` with `x = hi * 2^32 + lo`, each term by
//!   Shoup's multiplication by a constant (in [0, 2p)), then two conditional subtractions;
//! - two residues (x mod p0, y mod p1) compose by Garner's formula,
//!   `x + p0 * ((y - x) * p0^-1 mod p1)`, which is below p0 * p1 = q.
//!
//! With `kernel.rs`, `ntt.rs` and `ypir/simd.rs`, the only files allowed `unsafe` code (the
//! intrinsics, and calling the AVX-512 functions once a [`Kernel`] says the CPU runs them).
#![allow(unsafe_code)]

use spiral_rs::{
    arith::barrett_coeff_u64,
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, multiply as spiral_multiply},
};

use super::kernel::{Kernel, KernelKind};

/// Whether `kernel` takes the vector path for `sp`: the AVX-512 kernel, whole vectors of
/// coefficients, and what the vector arithmetic assumes of the two CRT moduli: below 2^31 (for
/// Shoup's products on 32-bit words) and p0 < 2 p1 (Garner's x mod p1 is one subtraction).
fn vectorised(kernel: Kernel, sp: &Params) -> bool {
    cfg!(target_arch = "x86_64")
        && kernel.kind() == KernelKind::Avx512
        && sp.crt_count == 2
        && sp.moduli[..2].iter().all(|&p| p < 1 << 31)
        && sp.moduli[0] < 2 * sp.moduli[1]
        && sp.poly_len.is_multiple_of(8)
}

/// Shoup's precomputed quotient for multiplying by `w` (< p) modulo `p`: floor(w 2^32 / p).
fn shoup(w: u64, p: u64) -> u64 {
    ((w as u128) << 32).div_euclid(p as u128) as u64
}

/// The constants of reducing words modulo one CRT modulus `p`.
#[derive(Clone, Copy)]
struct Reducer {
    p: u64,
    /// 2^32 mod p, and its Shoup quotient.
    high: u64,
    high_shoup: u64,
    /// The Shoup quotient of 1.
    one_shoup: u64,
}

impl Reducer {
    fn new(p: u64) -> Self {
        let high = (1u64 << 32) % p;
        Self {
            p,
            high,
            high_shoup: shoup(high, p),
            one_shoup: shoup(1, p),
        }
    }
}

/// `dst[m * n + z] = src[z] mod moduli[m]` for each residue m: spiral-rs's reduction of raw
/// words before a forward transform (`to_ntt`'s).
pub(super) fn reduce_into_residues(kernel: Kernel, sp: &Params, dst: &mut [u64], src: &[u64]) {
    let n = sp.poly_len;
    for m in 0..sp.crt_count {
        let out = &mut dst[m * n..(m + 1) * n];
        #[cfg(target_arch = "x86_64")]
        if vectorised(kernel, sp) {
            // SAFETY: a `Kernel` of kind AVX-512 exists only if the CPU runs AVX-512F.
            unsafe { avx512::reduce(Reducer::new(sp.moduli[m]), out, src) };
            continue;
        }
        let _ = kernel;
        for (d, &s) in out.iter_mut().zip(src) {
            *d = barrett_coeff_u64(sp, s, m);
        }
    }
}

/// Reduces every word of an NTT-form polynomial (both residues) in place, as spiral-rs's
/// `modular_reduce` does.
pub(super) fn reduce_residues(kernel: Kernel, sp: &Params, poly: &mut [u64]) {
    let n = sp.poly_len;
    for m in 0..sp.crt_count {
        let words = &mut poly[m * n..(m + 1) * n];
        #[cfg(target_arch = "x86_64")]
        if vectorised(kernel, sp) {
            // SAFETY: as in `reduce_into_residues`; source and destination are the same words.
            unsafe { avx512::reduce_in_place(Reducer::new(sp.moduli[m]), words) };
            continue;
        }
        for w in words.iter_mut() {
            *w = barrett_coeff_u64(sp, *w, m);
        }
    }
}

/// spiral-rs's `multiply` of NTT-form matrices: `res = a b`, every word reduced. Words must be
/// below 2^32, as spiral-rs's vector path takes them.
pub(super) fn multiply(
    kernel: Kernel,
    res: &mut PolyMatrixNTT,
    a: &PolyMatrixNTT,
    b: &PolyMatrixNTT,
) {
    assert_eq!((res.rows, res.cols, a.cols), (a.rows, b.cols, b.rows));
    let terms = |i, j| {
        (0..a.cols)
            .map(|k| (a.get_poly(i, k), b.get_poly(k, j)))
            .collect()
    };
    if !vector_dots(kernel, res, terms) {
        spiral_multiply(res, a, b);
    }
}

/// `res[r] = a * b[r]` for every polynomial of the NTT-form matrix `b` (`a` one polynomial),
/// reduced: spiral-rs's `scalar_multiply`.
pub(super) fn scalar_multiply(
    kernel: Kernel,
    res: &mut PolyMatrixNTT,
    a: &PolyMatrixNTT,
    b: &PolyMatrixNTT,
) {
    assert_eq!((a.rows, a.cols), (1, 1));
    assert_eq!((res.rows, res.cols), (b.rows, b.cols));
    let terms = |i, j| vec![(a.get_poly(0, 0), b.get_poly(i, j))];
    if !vector_dots(kernel, res, terms) {
        spiral_rs::poly::scalar_multiply(res, a, b);
    }
}

/// On the vector path: `res[i][j]` = the sum of the products of `terms(i, j)`'s pairs of
/// polynomials, word by word, reduced; true. Otherwise nothing is written; false.
fn vector_dots<'t>(
    kernel: Kernel,
    res: &mut PolyMatrixNTT,
    terms: impl Fn(usize, usize) -> Vec<(&'t [u64], &'t [u64])>,
) -> bool {
    let sp = res.params;
    #[cfg(target_arch = "x86_64")]
    if vectorised(kernel, sp) {
        let reducers = [Reducer::new(sp.moduli[0]), Reducer::new(sp.moduli[1])];
        for i in 0..res.rows {
            for j in 0..res.cols {
                let terms = terms(i, j);
                // SAFETY: as in `reduce_into_residues`.
                unsafe { avx512::dot(&reducers, sp.poly_len, res.get_poly_mut(i, j), &terms) };
            }
        }
        return true;
    }
    let _ = (kernel, sp, terms);
    false
}

/// One polynomial's two residues (each reduced) composed into words mod q: spiral-rs's
/// `crt_compose` for every coefficient.
pub(super) fn compose(kernel: Kernel, sp: &Params, out: &mut [u64], residues: &[u64]) {
    #[cfg(target_arch = "x86_64")]
    if vectorised(kernel, sp) {
        let (p0, p1) = (sp.moduli[0], sp.moduli[1]);
        let inv = (sp.mod0_inv_mod1 / p0) % p1;
        let (lo, hi) = residues.split_at(sp.poly_len);
        // SAFETY: as in `reduce_into_residues`.
        unsafe { avx512::compose(p0, p1, inv, shoup(inv, p1), out, lo, hi) };
        return;
    }
    let _ = kernel;
    for (z, d) in out.iter_mut().enumerate() {
        *d = sp.crt_compose(residues, z);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Reducer;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(x: u64) -> __m512i {
        _mm512_set1_epi64(x as i64)
    }

    /// x - p where x >= p, else x (x below 2p; unsigned, so the wrapped difference is larger).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub_if_above(x: __m512i, p: __m512i) -> __m512i {
        _mm512_min_epu64(x, _mm512_sub_epi64(x, p))
    }

    /// Shoup's `x w mod p` in [0, 2p), for x below 2^32 and w below p.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn shoup_mul(x: __m512i, w: __m512i, w_shoup: __m512i, p: __m512i) -> __m512i {
        let q = _mm512_srli_epi64(_mm512_mul_epu32(x, w_shoup), 32);
        _mm512_sub_epi64(_mm512_mul_epu32(x, w), _mm512_mul_epu32(q, p))
    }

    /// Any 64-bit words, reduced (canonical).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce_vec(x: __m512i, r: &Reducer) -> __m512i {
        let p = splat(r.p);
        let hi = shoup_mul(
            _mm512_srli_epi64(x, 32),
            splat(r.high),
            splat(r.high_shoup),
            p,
        );
        let lo = shoup_mul(
            _mm512_and_si512(x, splat(u32::MAX as u64)),
            splat(1),
            splat(r.one_shoup),
            p,
        );
        let sum = _mm512_add_epi64(hi, lo);
        sub_if_above(sub_if_above(sum, splat(2 * r.p)), p)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(words: &[u64], at: usize) -> __m512i {
        let eight = &words[at..at + 8];
        // SAFETY: `eight` is 8 words.
        unsafe { _mm512_loadu_si512(eight.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store(words: &mut [u64], at: usize, v: __m512i) {
        let eight = &mut words[at..at + 8];
        // SAFETY: `eight` is 8 words.
        unsafe { _mm512_storeu_si512(eight.as_mut_ptr().cast(), v) }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn reduce(r: Reducer, out: &mut [u64], src: &[u64]) {
        assert!(src.len() >= out.len() && out.len().is_multiple_of(8));
        for at in (0..out.len()).step_by(8) {
            store(out, at, reduce_vec(load(src, at), &r));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn reduce_in_place(r: Reducer, words: &mut [u64]) {
        assert!(words.len().is_multiple_of(8));
        for at in (0..words.len()).step_by(8) {
            let v = reduce_vec(load(words, at), &r);
            store(words, at, v);
        }
    }

    /// `out = sum of a b over the terms`, word by word over both residues (`n` words each, the
    /// products of the words' low 32 bits summed with wrapping, as spiral-rs sums them), reduced.
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot(
        reducers: &[Reducer; 2],
        n: usize,
        out: &mut [u64],
        terms: &[(&[u64], &[u64])],
    ) {
        assert!(n.is_multiple_of(8) && out.len() == 2 * n);
        assert!(
            terms
                .iter()
                .all(|(a, b)| a.len() >= 2 * n && b.len() >= 2 * n)
        );
        for (m, r) in reducers.iter().enumerate() {
            for at in (m * n..(m + 1) * n).step_by(8) {
                let mut acc = _mm512_setzero_si512();
                for (a, b) in terms {
                    acc = _mm512_add_epi64(acc, _mm512_mul_epu32(load(a, at), load(b, at)));
                }
                store(out, at, reduce_vec(acc, r));
            }
        }
    }

    /// Garner's composition of residues `lo` (mod p0) and `hi` (mod p1), each reduced, into
    /// words mod p0 p1; `inv` is p0^-1 mod p1 and `inv_shoup` its Shoup quotient.
    #[target_feature(enable = "avx512f")]
    pub(super) fn compose(
        p0: u64,
        p1: u64,
        inv: u64,
        inv_shoup: u64,
        out: &mut [u64],
        lo: &[u64],
        hi: &[u64],
    ) {
        assert!(out.len().is_multiple_of(8) && lo.len() >= out.len() && hi.len() >= out.len());
        let (vp0, vp1) = (splat(p0), splat(p1));
        let (vinv, vinv_shoup) = (splat(inv), splat(inv_shoup));
        for at in (0..out.len()).step_by(8) {
            let x = load(lo, at);
            let y = load(hi, at);
            // x mod p1 (p0 < 2 p1), then y - x mod p1: of the two candidates the smaller is
            // the one that did not wrap.
            let x1 = sub_if_above(x, vp1);
            let d = _mm512_sub_epi64(y, x1);
            let d = _mm512_min_epu64(d, _mm512_add_epi64(d, vp1));
            let t = sub_if_above(shoup_mul(d, vinv, vinv_shoup, vp1), vp1);
            store(out, at, _mm512_add_epi64(x, _mm512_mul_epu32(t, vp0)));
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

    /// Random words below `bound`, and the extremes of that range and of each modulus.
    fn words(rng: &mut StdRng, len: usize, bound: u64) -> Vec<u64> {
        let sp = sp();
        let mut extremes = vec![0, 1, bound - 1, bound / 2];
        for &p in &sp.moduli[..2] {
            extremes.extend(
                [p - 1, p, p + 1, 2 * p - 1, 2 * p]
                    .into_iter()
                    .filter(|&w| w < bound),
            );
        }
        (0..len)
            .map(|i| {
                extremes
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| rng.gen_range(0..bound))
            })
            .collect()
    }

    fn ntt_matrix(rng: &mut StdRng, rows: usize, cols: usize) -> PolyMatrixNTT<'static> {
        let sp = sp();
        let mut m = PolyMatrixNTT::zero(sp, rows, cols);
        let n = sp.poly_len;
        for r in 0..rows {
            for c in 0..cols {
                let poly = m.get_poly_mut(r, c);
                for (k, w) in poly.iter_mut().enumerate() {
                    let p = sp.moduli[k / n];
                    // Mostly reduced words, with the largest a product may take.
                    *w = if k % 97 == 0 {
                        p - 1
                    } else {
                        rng.gen_range(0..p)
                    };
                }
            }
        }
        m
    }

    #[test]
    fn reductions_give_spiral_rs_words_on_every_kernel() {
        let sp = sp();
        let mut rng = StdRng::seed_from_u64(1);
        for bound in [sp.modulus, 1 << 60, u64::MAX] {
            let src = words(&mut rng, sp.poly_len, bound);
            let mut want = vec![0; 2 * sp.poly_len];
            reduce_into_residues(
                Kernel::force(KernelKind::Portable).unwrap(),
                sp,
                &mut want,
                &src,
            );
            for (m, half) in want.chunks(sp.poly_len).enumerate() {
                for (w, &s) in half.iter().zip(&src) {
                    assert_eq!(*w, s % sp.moduli[m]);
                }
            }
            for kernel in Kernel::available() {
                let mut got = vec![7; 2 * sp.poly_len];
                reduce_into_residues(kernel, sp, &mut got, &src);
                assert_eq!(got, want, "{kernel:?} below {bound}");
                let mut in_place: Vec<u64> = src.iter().chain(&src).copied().collect();
                reduce_residues(kernel, sp, &mut in_place);
                assert_eq!(in_place, want, "{kernel:?} in place, below {bound}");
            }
        }
    }

    #[test]
    fn products_give_spiral_rs_words_on_every_kernel() {
        let sp = sp();
        let mut rng = StdRng::seed_from_u64(2);
        for (rows, inner) in [(2, 1), (2, 4), (2, 10), (3, 16)] {
            let a = ntt_matrix(&mut rng, rows, inner);
            let b = ntt_matrix(&mut rng, inner, 1);
            let mut want = PolyMatrixNTT::zero(sp, rows, 1);
            spiral_multiply(&mut want, &a, &b);
            for kernel in Kernel::available() {
                let mut got = PolyMatrixNTT::zero(sp, rows, 1);
                multiply(kernel, &mut got, &a, &b);
                assert!(
                    got.as_slice() == want.as_slice(),
                    "{kernel:?} {rows}x{inner}"
                );
            }
        }
        let scalar = ntt_matrix(&mut rng, 1, 1);
        let b = ntt_matrix(&mut rng, 2, 3);
        let mut want = PolyMatrixNTT::zero(sp, 2, 3);
        spiral_rs::poly::scalar_multiply(&mut want, &scalar, &b);
        for kernel in Kernel::available() {
            let mut got = PolyMatrixNTT::zero(sp, 2, 3);
            scalar_multiply(kernel, &mut got, &scalar, &b);
            assert!(got.as_slice() == want.as_slice(), "{kernel:?} scalar");
        }
    }

    #[test]
    fn composition_gives_spiral_rs_words_on_every_kernel() {
        let sp = sp();
        let mut rng = StdRng::seed_from_u64(3);
        let n = sp.poly_len;
        let mut residues = words(&mut rng, 2 * n, sp.moduli[1]);
        // Reduced residues, with each modulus's largest in both halves.
        for (k, w) in residues.iter_mut().enumerate() {
            *w %= sp.moduli[k / n];
        }
        residues[5] = sp.moduli[0] - 1;
        residues[n + 6] = sp.moduli[1] - 1;
        residues[7] = sp.moduli[0] - 1;
        residues[n + 7] = sp.moduli[1] - 1;
        let want: Vec<u64> = (0..n).map(|z| sp.crt_compose(&residues, z)).collect();
        for kernel in Kernel::available() {
            let mut got = vec![0; n];
            compose(kernel, sp, &mut got, &residues);
            assert_eq!(got, want, "{kernel:?}");
        }
    }
}
