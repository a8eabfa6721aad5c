//! YPIR's ring arithmetic on Spiral's ring: polynomials as their two CRT residues, the NTT (the
//! kernel's, as for Spiral), the slot permutations that apply an automorphism in the NTT
//! domain, sampling (uniform from public seeds, Gaussian from the client's randomness), and
//! the 7-byte wire word.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use spiral_rs::{
    aligned_memory::AlignedMemory64, arith::exponentiate_uint_mod,
    discrete_gaussian::DiscreteGaussian, params::Params,
};

use super::super::{kernel::Kernel, ntt, params::POLY_LEN, ring::MODULI};
use super::params::{GADGET_LEN, LEVELS, LOG2_P, NOISE_WIDTH, WORD_BYTES};

/// Ring degree d.
pub(super) const N: usize = POLY_LEN;
/// The ciphertext modulus q.
pub(super) const Q: u64 = MODULI[0] * MODULI[1];
/// Bits of one residue on the wire.
const RESIDUE_BITS: u32 = 28;
const _: () = assert!(MODULI[0] < 1 << RESIDUE_BITS && MODULI[1] < 1 << RESIDUE_BITS);
const _: () = assert!(2 * RESIDUE_BITS as usize == 8 * WORD_BYTES);

/// The public seed of the query's (and the hint's) uniform ring elements.
pub(super) const QUERY_SEED: [u8; 32] = *b"pir ypir-sp v1 query a-part seed";
/// The public seed of the packing keys' uniform ring elements.
pub(super) const KEY_SEED: [u8; 32] = *b"pir ypir-sp v1 packing key seed.";

/// A polynomial as its two CRT residues, residue-major (`2 * N` words), aligned for the NTT.
pub(super) struct Poly(AlignedMemory64);

impl Poly {
    pub(super) fn zero() -> Self {
        Self(AlignedMemory64::new(2 * N))
    }

    pub(super) fn words(&self) -> &[u64] {
        self.0.as_slice()
    }

    pub(super) fn words_mut(&mut self) -> &mut [u64] {
        self.0.as_mut_slice()
    }

    /// Residue `m`'s `N` words.
    pub(super) fn residue(&self, m: usize) -> &[u64] {
        &self.words()[m * N..(m + 1) * N]
    }

    /// Residue `m`'s `N` words, mutable.
    pub(super) fn residue_mut(&mut self, m: usize) -> &mut [u64] {
        &mut self.words_mut()[m * N..(m + 1) * N]
    }

    /// From small signed coefficients.
    pub(super) fn from_small(coeffs: &[i64]) -> Self {
        let mut p = Self::zero();
        for (m, &modulus) in MODULI.iter().enumerate() {
            for (w, &c) in p.residue_mut(m).iter_mut().zip(coeffs) {
                *w = c.rem_euclid(modulus as i64) as u64;
            }
        }
        p
    }
}

impl Clone for Poly {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// What the engine derives once for the ring.
pub(super) struct Ring {
    /// spiral-rs's parameters for the ring (its NTT tables; nothing else is used).
    pub(super) sp: Params,
    /// The NTT of Y = X^(d / 2^l) for packing level l = 1..=11 (index l - 1).
    pub(super) y: Vec<Poly>,
    /// Shoup's constants of `y`, slot by slot: `floor(Y * 2^32 / p_m)`, for the SIMD kernels'
    /// product by Y (`simd.rs`).
    pub(super) y_shoup: Vec<Poly>,
    /// The slot permutation of the automorphism X -> X^(2^l + 1), per level and residue:
    /// `NTT(tau(f))[k] = NTT(f)[perm[k]]`.
    pub(super) auto: Vec<[Vec<u16>; 2]>,
    /// The slot permutation of X -> X^-1.
    pub(super) reverse: [Vec<u16>; 2],
    /// floor(2^64 / p_m), for Barrett reduction.
    barrett: [u64; 2],
    /// d^-1 mod p_m.
    pub(super) n_inv: [u64; 2],
    /// Delta = floor(q / p) mod p_m.
    pub(super) delta: [u64; 2],
}

/// The ring's derived tables, built once per process.
pub(super) fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(Ring::build)
}

impl Ring {
    fn build() -> Self {
        // Only the NTT tables of these parameters are used; the Spiral-specific fields are
        // placeholders.
        let sp = Params::init(
            N,
            &MODULI,
            NOISE_WIDTH,
            1,
            1 << LOG2_P,
            28,
            4,
            3,
            2,
            3,
            true,
            1,
            1,
            1,
            0,
            0,
        );
        let kernel = Kernel::detected();
        let barrett = MODULI.map(|p| u64::MAX / p);
        let mut ring = Self {
            sp,
            y: Vec::new(),
            y_shoup: Vec::new(),
            auto: Vec::new(),
            reverse: [Vec::new(), Vec::new()],
            barrett,
            // p_m is prime: d^-1 = d^(p_m - 2).
            n_inv: MODULI.map(|p| exponentiate_uint_mod(N as u64, p - 2, p)),
            delta: MODULI.map(|p| (Q >> LOG2_P) % p),
        };
        // The slots' evaluation points: the NTT of X.
        let mut x = Poly::zero();
        for m in 0..2 {
            x.residue_mut(m)[1] = 1;
        }
        ring.forward(kernel, &mut x);
        for level in 1..=LEVELS {
            let mut y = Poly::zero();
            for m in 0..2 {
                y.residue_mut(m)[N >> level] = 1;
            }
            ring.forward(kernel, &mut y);
            let mut shoup = Poly::zero();
            for (m, &p) in MODULI.iter().enumerate() {
                for (s, &w) in shoup.residue_mut(m).iter_mut().zip(y.residue(m)) {
                    *s = ((u128::from(w) << 32) / u128::from(p)) as u64;
                }
            }
            ring.y.push(y);
            ring.y_shoup.push(shoup);
            let t = (1 << level) + 1;
            ring.auto
                .push([0, 1].map(|m| slot_permutation(&x, m, t as u64)));
        }
        ring.reverse = [0, 1].map(|m| slot_permutation(&x, m, 2 * N as u64 - 1));
        ring
    }

    /// `x mod p_m` for any `x < 2^64`.
    #[inline]
    pub(super) fn reduce(&self, x: u64, m: usize) -> u64 {
        let p = MODULI[m];
        let q = ((u128::from(x) * u128::from(self.barrett[m])) >> 64) as u64;
        let r = x - q * p;
        if r >= p { r - p } else { r }
    }

    /// `a * b mod p_m` for `a, b < 2^32`.
    #[inline]
    pub(super) fn mul(&self, a: u64, b: u64, m: usize) -> u64 {
        self.reduce(a * b, m)
    }

    /// Forward NTT in place; every output word reduced.
    pub(super) fn forward(&self, kernel: Kernel, poly: &mut Poly) {
        ntt::forward(kernel, &self.sp, poly.words_mut());
        self.reduce_all(poly);
    }

    /// Inverse NTT in place; every output word reduced.
    pub(super) fn inverse(&self, kernel: Kernel, poly: &mut Poly) {
        ntt::inverse(kernel, &self.sp, poly.words_mut());
        self.reduce_all(poly);
    }

    fn reduce_all(&self, poly: &mut Poly) {
        for (m, &p) in MODULI.iter().enumerate() {
            for w in poly.residue_mut(m) {
                if *w >= p {
                    *w = self.reduce(*w, m);
                }
            }
        }
    }

    /// Coefficient `k` of a coefficient-form polynomial, composed mod q.
    #[inline]
    pub(super) fn compose(&self, poly: &Poly, k: usize) -> u64 {
        self.sp.crt_compose_2(poly.words()[k], poly.words()[N + k])
    }

    /// `a * b`, slot by slot (NTT form), reduced.
    pub(super) fn mul_into(&self, out: &mut Poly, a: &Poly, b: &Poly) {
        for m in 0..2 {
            for ((o, &x), &y) in out
                .residue_mut(m)
                .iter_mut()
                .zip(a.residue(m))
                .zip(b.residue(m))
            {
                *o = self.mul(x, y, m);
            }
        }
    }
}

/// The permutation of NTT slots that X -> X^t makes, for residue `m`, from the slots'
/// evaluation points `x` (the NTT of X): Spiral's expansion's ([`ntt::slot_permutation`]).
fn slot_permutation(x: &Poly, m: usize, t: u64) -> Vec<u16> {
    // Always found: t is odd (and `slot_permutations_are_the_automorphisms` checks every
    // table); the identity would only stand in for a table that cannot be missing.
    ntt::slot_permutation(x.residue(m), MODULI[m], t).unwrap_or_else(|| (0..N as u16).collect())
}

/// The automorphism X -> X^t on a coefficient-form polynomial mod q.
pub(super) fn automorph_coeffs(input: &[u64], t: usize, out: &mut [u64]) {
    for (i, &c) in input.iter().enumerate() {
        let e = (i * t) % (2 * N);
        if e < N {
            out[e] = c;
        } else {
            out[e - N] = if c == 0 { 0 } else { Q - c };
        }
    }
}

/// The automorphism X -> X^t on small signed coefficients.
pub(super) fn automorph_small(input: &[i64], t: usize) -> Vec<i64> {
    let mut out = vec![0; N];
    for (i, &c) in input.iter().enumerate() {
        let e = (i * t) % (2 * N);
        if e < N {
            out[e] = c;
        } else {
            out[e - N] = -c;
        }
    }
    out
}

/// A uniform polynomial (NTT form) from a public seed and a stream number: each residue's
/// words drawn by rejection from 28 random bits.
pub(super) fn uniform(seed: &[u8; 32], stream: u64) -> Poly {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    rng.set_stream(stream);
    let mut p = Poly::zero();
    for (m, &modulus) in MODULI.iter().enumerate() {
        for w in p.residue_mut(m) {
            *w = loop {
                let v = u64::from(rng.next_u32_masked());
                if v < modulus {
                    break v;
                }
            };
        }
    }
    p
}

trait Masked {
    fn next_u32_masked(&mut self) -> u32;
}

impl Masked for ChaCha20Rng {
    fn next_u32_masked(&mut self) -> u32 {
        self.r#gen::<u32>() & ((1 << RESIDUE_BITS) - 1)
    }
}

/// The packing keys' public halves (NTT form), level l's digit j at `(l - 1) * 3 + j`: stream
/// `(l - 1) * 3 + j` of [`KEY_SEED`], drawn once per process (every query's keys and the
/// server's precomputation use the same ones).
pub(super) fn packing_key_a() -> &'static [Poly] {
    static KEYS: OnceLock<Vec<Poly>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..(LEVELS * GADGET_LEN) as u64)
            .map(|stream| uniform(&KEY_SEED, stream))
            .collect()
    })
}

/// `N` discrete Gaussian coefficients of width [`NOISE_WIDTH`], centred.
pub(super) fn gaussian(rng: &mut ChaCha20Rng) -> Vec<i64> {
    static DG: OnceLock<Gaussian> = OnceLock::new();
    let dg = DG.get_or_init(|| Gaussian::new(NOISE_WIDTH));
    (0..N).map(|_| dg.sample(rng)).collect()
}

/// spiral-rs's discrete Gaussian (`DiscreteGaussian`: the same table, the same draw per
/// sample, so the same values from the same stream), sampled without its per-entry
/// `subtle` barriers, which made it 95 % of a query's time: the value is the count of table
/// entries below the draw, a sum over the whole table with no branch on the draw, which the
/// compiler turns into vector compares.
struct Gaussian {
    /// The cumulative distribution at -max..=max, times 2^64.
    cdf: Vec<u64>,
    max: i64,
}

impl Gaussian {
    fn new(width: f64) -> Self {
        let inner = DiscreteGaussian::init(width);
        Self {
            cdf: inner.cdf_table,
            max: inner.max_val,
        }
    }

    fn sample(&self, rng: &mut ChaCha20Rng) -> i64 {
        self.value(rng.r#gen())
    }

    /// The value of one 64-bit draw.
    fn value(&self, draw: u64) -> i64 {
        let below: i64 = self.cdf.iter().map(|&c| i64::from(c < draw)).sum();
        // spiral-rs gives the first value whose cumulative probability reaches the draw, and
        // 0 if none does (a draw above the table's last entry, which rounding may leave below
        // 2^64 - 1): masked, not branched.
        let none = i64::from(below == self.cdf.len() as i64);
        (below - self.max) * (1 - none)
    }
}

/// Writes a word's two residues as 7 little-endian bytes.
pub(super) fn put_word(out: &mut Vec<u8>, r0: u64, r1: u64) {
    let w = r0 | (r1 << RESIDUE_BITS);
    out.extend_from_slice(&w.to_le_bytes()[..WORD_BYTES]);
}

/// Reads a 7-byte word into its two residues; `None` if either is not reduced.
#[inline]
pub(super) fn get_word(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut le = [0u8; 8];
    le[..WORD_BYTES].copy_from_slice(&bytes[..WORD_BYTES]);
    let w = u64::from_le_bytes(le);
    let (r0, r1) = (w & ((1 << RESIDUE_BITS) - 1), w >> RESIDUE_BITS);
    (r0 < MODULI[0] && r1 < MODULI[1]).then_some((r0, r1))
}

/// `round(x * 2^bits / q) mod 2^bits`, for `x < q`.
#[inline]
pub(super) fn rescale(x: u64, bits: u32) -> u64 {
    let v = ((u128::from(x) << bits) + u128::from(Q / 2)) / u128::from(Q);
    (v as u64) & ((1 << bits) - 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::needless_range_loop)]
    use super::*;

    fn random_poly(seed: u64) -> Poly {
        uniform(&[7; 32], seed)
    }

    /// The Gaussian gives spiral-rs's `DiscreteGaussian` values from the same stream, at
    /// both ends of the table too (a draw of 0 and of 2^64 - 1).
    #[test]
    fn the_gaussian_is_spiral_rs_s() {
        let theirs = DiscreteGaussian::init(NOISE_WIDTH);
        let ours = Gaussian::new(NOISE_WIDTH);
        let centred = |v: u64| {
            if v > Q / 2 {
                v as i64 - Q as i64
            } else {
                v as i64
            }
        };
        let (mut a, mut b) = (ChaCha20Rng::seed_from_u64(5), ChaCha20Rng::seed_from_u64(5));
        let mut extremes = (0, 0);
        for _ in 0..200_000 {
            let v = ours.sample(&mut a);
            assert_eq!(v, centred(theirs.sample(Q, &mut b)));
            extremes = (extremes.0.min(v), extremes.1.max(v));
        }
        // Width 16.04: values well past +-3 sigma (sigma 6.4) turn up in 200,000 draws.
        assert!(extremes.0 < -20 && extremes.1 > 20, "{extremes:?}");
        // The table's ends: the smallest value for a draw of 0, and for the largest draw
        // whatever spiral-rs gives.
        assert_eq!(ours.value(0), -ours.max);
        let last = *ours.cdf.last().unwrap();
        let top = if last < u64::MAX { 0 } else { ours.max };
        assert_eq!(ours.value(u64::MAX), top);
    }

    /// The slot permutations apply the automorphism: NTT(tau(f)) = perm(NTT(f)).
    #[test]
    fn slot_permutations_are_the_automorphisms() {
        let ring = ring();
        let kernel = Kernel::detected();
        let f = random_poly(1);
        let mut coeffs = f.clone();
        ring.inverse(kernel, &mut coeffs);
        let composed: Vec<u64> = (0..N).map(|k| ring.compose(&coeffs, k)).collect();
        let check = |t: usize, perm: &[Vec<u16>; 2]| {
            let mut image = vec![0; N];
            automorph_coeffs(&composed, t, &mut image);
            let mut tau = Poly::zero();
            for m in 0..2 {
                for (w, &c) in tau.residue_mut(m).iter_mut().zip(&image) {
                    *w = c % MODULI[m];
                }
            }
            ring.forward(kernel, &mut tau);
            for m in 0..2 {
                for k in 0..N {
                    assert_eq!(
                        tau.residue(m)[k],
                        f.residue(m)[perm[m][k] as usize],
                        "t {t}"
                    );
                }
            }
        };
        for level in 1..=LEVELS {
            check((1 << level) + 1, &ring.auto[level - 1]);
        }
        check(2 * N - 1, &ring.reverse);
    }

    #[test]
    fn words_round_trip_and_refuse_unreduced_residues() {
        let mut out = Vec::new();
        put_word(&mut out, MODULI[0] - 1, MODULI[1] - 1);
        put_word(&mut out, 0, 5);
        assert_eq!(get_word(&out), Some((MODULI[0] - 1, MODULI[1] - 1)));
        assert_eq!(get_word(&out[7..]), Some((0, 5)));
        let mut bad = Vec::new();
        put_word(&mut bad, MODULI[0], 0);
        assert_eq!(get_word(&bad), None);
        let mut bad = Vec::new();
        put_word(&mut bad, 0, MODULI[1]);
        assert_eq!(get_word(&bad), None);
    }

    #[test]
    fn barrett_reduction_is_exact() {
        let ring = ring();
        for m in 0..2 {
            for x in [
                0,
                1,
                MODULI[m] - 1,
                MODULI[m],
                u64::MAX,
                u64::MAX / 3,
                1 << 57,
            ] {
                assert_eq!(ring.reduce(x, m), x % MODULI[m]);
            }
        }
    }
}
