//! Packing d LWE ciphertexts into one ring ciphertext (Chen, Dai, Kim and Song's tree, as YPIR
//! uses it), split into what depends only on the database and what depends on the query.
//!
//! The tree has 11 levels. Node i of level l combines two ciphertexts of level l - 1, `even`
//! (number i) and `odd` (number i + d / 2^l), with `Y = X^(d / 2^l)` and the automorphism
//! `tau: X -> X^(2^l + 1)`:
//!
//! ```text
//! even + Y odd + KeySwitch(tau(even - Y odd))
//! ```
//!
//! and the root encrypts d times the d inputs' messages as one polynomial's coefficients.
//!
//! - **First rows (database only).** The inputs' first rows are the hint's columns, fixed by
//!   the database and the public query seed, and the key switches' first rows come from the
//!   public key seed. So the first row of every node, the gadget digits of every rotated
//!   ciphertext, and the root's first row are computed once, at load ([`Packing::precompute`]).
//!   That is the digits of 2047 nodes, 3 ring elements each: 96 MiB per instance.
//! - **Second rows (per query).** A key switch adds `sum_j digit_j * B_j` with the query's key
//!   `B_j`; everything else in a node is linear. The inputs' second rows are constants (the
//!   first pass's answers), which the tree maps to d times themselves at their own coefficient,
//!   so the tree runs from zero and they are added at the end ([`Packing::pack`]): per node, one
//!   product by Y, one slot permutation and three products with the key, all in the NTT domain.

use rayon::prelude::*;

use super::arith::{self, N, Poly, ring};
use super::params::{GADGET_BITS, GADGET_LEN, LEVELS, LOG2_Q_A, LOG2_Q_B, RESPONSE_COEFF_BYTES};
use super::simd::{self, NODE_WORDS};
use crate::pir::{Kernel, ring::MODULI};

/// Nodes of the tree.
const NODES: usize = N - 1;

/// The first node of `level` (1-based) in the digits' order: levels in order.
fn level_start(level: usize) -> usize {
    N - (N >> (level - 1))
}

/// One instance's packing, precomputed from its columns' first rows.
pub(super) struct Packing {
    /// Per node, the NTT of the gadget digits of its rotated ciphertext's first row: digit j
    /// at `[j * N..]`, each word holding residue 0 in its low 32 bits and residue 1 in its high.
    digits: Vec<u64>,
    /// The root's first row, rescaled to 2^28: the first row of every response.
    first_row: Vec<u64>,
}

impl Packing {
    /// From the d columns' first rows (NTT form): the digits of every node and the root.
    pub(super) fn precompute(kernel: Kernel, mut columns: Vec<Poly>) -> Self {
        assert_eq!(columns.len(), N, "one ciphertext per coefficient");
        let ring = ring();
        let keys = arith::packing_key_a();
        let mut digits = vec![0u64; NODES * NODE_WORDS];
        for level in 1..=LEVELS {
            let half = N >> level;
            let (evens, odds) = columns[..2 * half].split_at_mut(half);
            let start = level_start(level) * NODE_WORDS;
            let out = &mut digits[start..start + half * NODE_WORDS];
            let level_keys = &keys[(level - 1) * GADGET_LEN..level * GADGET_LEN];
            evens
                .par_iter_mut()
                .zip(odds.par_iter())
                .zip(out.par_chunks_mut(NODE_WORDS))
                .for_each(|((even, odd), out)| {
                    first_row_node(kernel, level, even, odd, level_keys, out);
                });
        }
        let mut root = columns.swap_remove(0);
        ring.inverse(kernel, &mut root);
        let first_row = (0..N)
            .map(|k| arith::rescale(ring.compose(&root, k), LOG2_Q_A))
            .collect();
        Self { digits, first_row }
    }

    /// The response ciphertexts for a batch of queries: per query its packing keys
    /// (`GADGET_LEN` per level, NTT form, residues packed as in `digits`) and its first pass's
    /// answers for this instance's d columns (per residue, reduced). The queries go through the
    /// tree [`simd::PACK_BATCH`] at a time, each node's digits read once for all of them.
    pub(super) fn pack(
        &self,
        kernel: Kernel,
        keys: &[&[u64]],
        answers: &[[&[u64]; 2]],
    ) -> Vec<Vec<u8>> {
        let ring = ring();
        let mut scratch = simd::Scratch::new(keys.len().min(simd::PACK_BATCH));
        let mut packed = Vec::with_capacity(keys.len());
        for (keys, answers) in keys
            .chunks(simd::PACK_BATCH)
            .zip(answers.chunks(simd::PACK_BATCH))
        {
            let roots = self.second_rows(kernel, LEVELS, 0, keys, &mut scratch);
            for (mut root, answers) in roots.into_iter().zip(answers) {
                ring.inverse(kernel, &mut root);
                let mut out = Vec::with_capacity(N * RESPONSE_COEFF_BYTES);
                for k in 0..N {
                    for (m, answer) in answers.iter().enumerate() {
                        let w = &mut root.residue_mut(m)[k];
                        *w = ring.reduce(*w + ring.mul(answer[k], N as u64 % MODULI[m], m), m);
                    }
                    let b = arith::rescale(ring.compose(&root, k), LOG2_Q_B);
                    let coeff = self.first_row[k] | (b << LOG2_Q_A);
                    out.extend_from_slice(&coeff.to_le_bytes()[..RESPONSE_COEFF_BYTES]);
                }
                packed.push(out);
            }
        }
        packed
    }

    /// Node i of `level`'s second row (NTT form) for each query of a batch (its keys), from
    /// zero inputs: the key switches' part.
    fn second_rows(
        &self,
        kernel: Kernel,
        level: usize,
        i: usize,
        keys: &[&[u64]],
        scratch: &mut simd::Scratch,
    ) -> Vec<Poly> {
        let children = (level > 1).then(|| {
            [
                self.second_rows(kernel, level - 1, i, keys, scratch),
                self.second_rows(kernel, level - 1, i + (N >> level), keys, scratch),
            ]
        });
        let node = level_start(level) + i;
        let digits = &self.digits[node * NODE_WORDS..(node + 1) * NODE_WORDS];
        let level_keys: Vec<&[u64]> = keys
            .iter()
            .map(|k| &k[(level - 1) * NODE_WORDS..level * NODE_WORDS])
            .collect();
        let mut out: Vec<Poly> = keys.iter().map(|_| Poly::zero()).collect();
        let children = children.as_ref().map(|[even, odd]| [&even[..], &odd[..]]);
        simd::second_row_nodes(
            kernel,
            level,
            children,
            digits,
            &level_keys,
            &mut out,
            scratch,
        );
        out
    }

    /// Bytes the precomputation holds.
    pub(super) fn resident_bytes(&self) -> usize {
        (self.digits.len() + self.first_row.len()) * 8
    }
}

/// Node `(level, i)`'s first row: `even` becomes the node's, `out` gets its digits.
fn first_row_node(
    kernel: Kernel,
    level: usize,
    even: &mut Poly,
    odd: &Poly,
    keys: &[Poly],
    out: &mut [u64],
) {
    let ring = ring();
    let y = &ring.y[level - 1];
    let mut diff = Poly::zero();
    for (m, &p) in MODULI.iter().enumerate() {
        for k in 0..N {
            let yo = ring.mul(y.residue(m)[k], odd.residue(m)[k], m);
            let e = even.residue(m)[k];
            diff.residue_mut(m)[k] = if e >= yo { e - yo } else { e + p - yo };
            even.residue_mut(m)[k] = ring.reduce(e + yo, m);
        }
    }
    ring.inverse(kernel, &mut diff);
    let coeffs: Vec<u64> = (0..N).map(|k| ring.compose(&diff, k)).collect();
    let mut rotated = vec![0u64; N];
    arith::automorph_coeffs(&coeffs, (1 << level) + 1, &mut rotated);
    let mask = (1u64 << GADGET_BITS) - 1;
    let mut digit = Poly::zero();
    for j in 0..GADGET_LEN {
        let shift = GADGET_BITS as usize * j;
        for m in 0..2 {
            for (w, &c) in digit.residue_mut(m).iter_mut().zip(&rotated) {
                *w = (c >> shift) & mask;
            }
        }
        ring.forward(kernel, &mut digit);
        for (m, &p) in MODULI.iter().enumerate() {
            for k in 0..N {
                let x = ring.mul(digit.residue(m)[k], keys[j].residue(m)[k], m);
                let e = even.residue_mut(m);
                e[k] = if e[k] + x >= p {
                    e[k] + x - p
                } else {
                    e[k] + x
                };
            }
        }
        for k in 0..N {
            out[j * N + k] = digit.residue(0)[k] | (digit.residue(1)[k] << 32);
        }
    }
}
