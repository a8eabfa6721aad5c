//! The client's side of YPIR+SP: a fresh secret per lookup, its packing keys and query, and the
//! response's decryption.
//!
//! Everything is under a secret s drawn afresh for each query, so no two queries can be linked
//! by their keys, and nothing is registered: the packing keys travel with the query.
//!
//! - Packing key for level l (the automorphism tau: X -> X^(2^l + 1)) and digit j: a public
//!   uniform `A` (from `arith::KEY_SEED`) and `B = A s + e - z^j tau(s)`, sent in NTT form.
//! - Query: for each block i of d rows, a public uniform `a_i` (from [`QUERY_SEED`]) and
//!   `b_i = a_i s + d^-1 (e_i + Delta u)`, where u is 1 at the wanted row and 0 elsewhere; the
//!   coefficients of `b_i` are sent, one word per row. Packing multiplies by d, which the
//!   `d^-1` undoes.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::arith::{self, N, Poly, QUERY_SEED, ring};
use super::params::{
    GADGET_BITS, GADGET_LEN, LEVELS, LOG2_P, LOG2_Q_A, LOG2_Q_B, RESPONSE_COEFF_BYTES, YpirParams,
};
use crate::error::{CoreError, PirBytesError, PirMessage, Result};
use crate::pir::{Kernel, ring::MODULI};

/// A query's secret: what decrypts its response. Never leaves the client; one per query.
pub struct YpirSecret {
    params: YpirParams,
    /// s in NTT form.
    s_ntt: Poly,
}

impl std::fmt::Debug for YpirSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("YpirSecret(..)")
    }
}

impl YpirSecret {
    #[cfg(test)]
    pub(super) fn s_ntt_for_tests(&self) -> Poly {
        self.s_ntt.clone()
    }
}

/// Encrypts a query for row `index` with fresh randomness from the OS.
pub fn query(params: &YpirParams, index: usize) -> Result<(YpirSecret, Vec<u8>)> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    query_from_seed(params, index, seed)
}

/// Encrypts a query for row `index`, every random choice drawn from `seed`.
pub fn query_from_seed(
    params: &YpirParams,
    index: usize,
    seed: [u8; 32],
) -> Result<(YpirSecret, Vec<u8>)> {
    if index >= params.num_items() {
        return Err(CoreError::Internal("YPIR query index beyond the rows"));
    }
    let ring = ring();
    let kernel = Kernel::detected();
    let mut rng = ChaCha20Rng::from_seed(seed);
    let s = arith::gaussian(&mut rng);
    let mut s_ntt = Poly::from_small(&s);
    ring.forward(kernel, &mut s_ntt);

    let mut out = Vec::with_capacity(params.query_bytes());
    let mut prod = Poly::zero();
    for level in 1..=LEVELS {
        let mut tau_s = Poly::from_small(&arith::automorph_small(&s, (1 << level) + 1));
        ring.forward(kernel, &mut tau_s);
        for j in 0..GADGET_LEN {
            let a = &arith::packing_key_a()[(level - 1) * GADGET_LEN + j];
            let mut e = Poly::from_small(&arith::gaussian(&mut rng));
            ring.forward(kernel, &mut e);
            ring.mul_into(&mut prod, a, &s_ntt);
            let mut words = [[0u64; N]; 2];
            for (m, residue) in words.iter_mut().enumerate() {
                let p = MODULI[m];
                let g = (1u64 << (GADGET_BITS as usize * j)) % p;
                for (k, w) in residue.iter_mut().enumerate() {
                    let g_tau_s = ring.mul(g, tau_s.residue(m)[k], m);
                    *w = ring.reduce(prod.residue(m)[k] + e.residue(m)[k] + p - g_tau_s, m);
                }
            }
            for (&r0, &r1) in words[0].iter().zip(&words[1]) {
                arith::put_word(&mut out, r0, r1);
            }
        }
    }

    for block in 0..params.num_items() / N {
        let a = arith::uniform(&QUERY_SEED, block as u64);
        ring.mul_into(&mut prod, &a, &s_ntt);
        ring.inverse(kernel, &mut prod);
        let e = arith::gaussian(&mut rng);
        let mut words = [[0u64; N]; 2];
        for (m, residue) in words.iter_mut().enumerate() {
            let p = MODULI[m];
            for (k, w) in residue.iter_mut().enumerate() {
                let mut msg = e[k].rem_euclid(p as i64) as u64;
                if block * N + k == index {
                    msg = ring.reduce(msg + ring.delta[m], m);
                }
                *w = ring.reduce(prod.residue(m)[k] + ring.mul(ring.n_inv[m], msg, m), m);
            }
        }
        for (&r0, &r1) in words[0].iter().zip(&words[1]) {
            arith::put_word(&mut out, r0, r1);
        }
    }
    debug_assert_eq!(out.len(), params.query_bytes());
    Ok((
        YpirSecret {
            params: *params,
            s_ntt,
        },
        out,
    ))
}

/// Decrypts a response into the row's bytes.
pub fn decode(secret: &YpirSecret, response: &[u8]) -> Result<Vec<u8>> {
    let params = &secret.params;
    let expected = params.response_bytes();
    if response.len() != expected {
        return Err(CoreError::pir_bytes(
            PirMessage::Response,
            PirBytesError::Length {
                expected,
                got: response.len(),
            },
        ));
    }
    let ring = ring();
    let kernel = Kernel::detected();
    let mut values = Vec::with_capacity(params.cols());
    for ct in response.chunks_exact(N * RESPONSE_COEFF_BYTES) {
        values.extend(decrypt(ring, kernel, &secret.s_ntt, ct));
    }
    Ok(pack_elements(&values, params.item_bytes()))
}

/// One packed ciphertext's 2048 elements.
fn decrypt(ring: &arith::Ring, kernel: Kernel, s_ntt: &Poly, ct: &[u8]) -> Vec<u64> {
    let (a, b) = read_ciphertext(ct);
    let phase = phase(ring, kernel, s_ntt, &a, &b);
    let half = 1u64 << (LOG2_Q_A - LOG2_P - 1);
    phase
        .iter()
        .map(|&v| ((v + half) >> (LOG2_Q_A - LOG2_P)) & ((1 << LOG2_P) - 1))
        .collect()
}

/// A packed ciphertext's rows: the first rescaled to 2^28, the second to 2^20.
pub(super) fn read_ciphertext(ct: &[u8]) -> (Vec<u64>, Vec<u64>) {
    ct.chunks_exact(RESPONSE_COEFF_BYTES)
        .map(|c| {
            let mut le = [0u8; 8];
            le[..RESPONSE_COEFF_BYTES].copy_from_slice(c);
            let w = u64::from_le_bytes(le);
            (w & ((1 << LOG2_Q_A) - 1), w >> LOG2_Q_A)
        })
        .unzip()
}

/// `b * 2^8 - a s mod 2^28`: the decrypted phase, in units of q / 2^28.
pub(super) fn phase(
    ring: &arith::Ring,
    kernel: Kernel,
    s_ntt: &Poly,
    a: &[u64],
    b: &[u64],
) -> Vec<u64> {
    // a s over the integers: |a s| < d * 2^28 * max|s| < q / 2, so the product mod q, centred,
    // is exact.
    let mut a_poly = Poly::zero();
    for (m, &p) in MODULI.iter().enumerate() {
        for (w, &x) in a_poly.residue_mut(m).iter_mut().zip(a) {
            *w = x % p;
        }
    }
    ring.forward(kernel, &mut a_poly);
    let mut prod = Poly::zero();
    ring.mul_into(&mut prod, &a_poly, s_ntt);
    ring.inverse(kernel, &mut prod);
    let mask = (1u64 << LOG2_Q_A) - 1;
    (0..N)
        .map(|k| {
            let c = ring.compose(&prod, k);
            let centred = if c > arith::Q / 2 {
                c as i64 - arith::Q as i64
            } else {
                c as i64
            };
            ((b[k] << (LOG2_Q_A - LOG2_Q_B)) as i64 - centred) as u64 & mask
        })
        .collect()
}

/// Elements of 14 bits into bytes, little-endian bit order.
pub(super) fn pack_elements(values: &[u64], bytes: usize) -> Vec<u8> {
    // Room for the last element's 3-byte window.
    let mut out = vec![0u8; bytes + 3];
    for (i, &v) in values.iter().enumerate() {
        let bit = i * LOG2_P as usize;
        let shifted = (v as u32) << (bit % 8);
        for (o, b) in out[bit / 8..bit / 8 + 3]
            .iter_mut()
            .zip(shifted.to_le_bytes())
        {
            *o |= b;
        }
    }
    out.truncate(bytes);
    out
}

/// Bytes into elements of 14 bits (the inverse of [`pack_elements`]); `bytes` holds a whole
/// number of elements.
pub(super) fn unpack_elements(bytes: &[u8]) -> Vec<u16> {
    let count = bytes.len() * 8 / LOG2_P as usize;
    let mask = (1u32 << LOG2_P) - 1;
    (0..count)
        .map(|i| {
            let bit = i * LOG2_P as usize;
            let mut window = [0u8; 4];
            let end = (bit / 8 + 3).min(bytes.len());
            window[..end - bit / 8].copy_from_slice(&bytes[bit / 8..end]);
            ((u32::from_le_bytes(window) >> (bit % 8)) & mask) as u16
        })
        .collect()
}
