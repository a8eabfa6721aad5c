//! The first dimension: one pass over the whole database for every query of a batch.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use spiral_rs::{
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw},
};

use super::{
    kernel::{Kernel, row_dots},
    ntt,
    params::SchemeParams,
    ring::{MODULI, PACKED_OFFSET_2, spiral_params},
};
use crate::error::Result;

/// Coefficients per piece of the first-dimension pass: a slice splits into several pieces so
/// every core has work whatever the number of slices, and each piece streams a long run of rows.
const Z_PIECE: usize = 256;

/// The first dimension's results for some slices and every query of a batch.
pub(super) struct FirstDim {
    sp: &'static Params,
    kernel: Kernel,
    queries: usize,
    pieces: usize,
    z_piece: usize,
    /// `[slice * pieces + piece][(z - piece start, i, query)]`: the four reduced dot products.
    sums: Vec<Vec<[u64; 4]>>,
}

impl FirstDim {
    /// The `num_per` ciphertexts of one query in one of the slices, out of the NTT domain.
    pub(super) fn ciphertexts(&self, slice: usize, query: usize) -> Vec<PolyMatrixRaw<'static>> {
        let poly_len = self.sp.poly_len;
        let num_per = 1usize << self.sp.db_dim_2;
        let mut ct = PolyMatrixNTT::zero(self.sp, 2, 1);
        let mut scratch = ntt::Scratch::new(self.sp);
        (0..num_per)
            .map(|i| {
                let d = ct.data.as_mut_slice();
                for piece in 0..self.pieces {
                    let s = &self.sums[slice * self.pieces + piece];
                    for zk in 0..self.z_piece {
                        let z = piece * self.z_piece + zk;
                        let [n0_0, n0_1, n1_0, n1_1] = s[(zk * num_per + i) * self.queries + query];
                        d[z] = n0_0;
                        d[2 * poly_len + z] = n0_1;
                        d[poly_len + z] = n1_0;
                        d[3 * poly_len + z] = n1_1;
                    }
                }
                let mut raw = PolyMatrixRaw::zero(self.sp, 2, 1);
                ntt::from_ntt(self.kernel, &mut raw, &ct, &mut scratch);
                raw
            })
            .collect()
    }
}

/// The first dimension for several queries over the database slices `slices`: spiral-rs's
/// `multiply_reg_by_database`, with each database row read once for every query.
pub(super) fn first_dimension(
    sp: &'static Params,
    kernel: Kernel,
    db: &[u64],
    v_firstdim: &[&[u64]],
    slices: std::ops::Range<usize>,
) -> FirstDim {
    let poly_len = sp.poly_len;
    let dim0 = 1usize << sp.db_dim_1;
    let num_per = 1usize << sp.db_dim_2;
    let slice_words = dim0 * num_per * poly_len;
    let nq = v_firstdim.len();
    let z_piece = Z_PIECE.min(poly_len);
    let pieces = poly_len / z_piece;
    let sums = (0..slices.len() * pieces)
        .into_par_iter()
        .map(|unit| {
            let (slice, piece) = (slices.start + unit / pieces, unit % pieces);
            let cur_db = &db[slice * slice_words..(slice + 1) * slice_words];
            let mut out = vec![[0u64; 4]; z_piece * num_per * nq];
            let mut a: Vec<&[u64]> = Vec::with_capacity(nq);
            for zk in 0..z_piece {
                let z = piece * z_piece + zk;
                a.clear();
                a.extend(
                    v_firstdim
                        .iter()
                        .map(|v| &v[z * 2 * dim0..(z + 1) * 2 * dim0]),
                );
                for i in 0..num_per {
                    let b_base = (z * num_per + i) * dim0;
                    let o = (zk * num_per + i) * nq;
                    row_dots(
                        kernel,
                        sp,
                        &cur_db[b_base..b_base + dim0],
                        &a,
                        &mut out[o..o + nq],
                    );
                }
            }
            out
        })
        .collect();
    FirstDim {
        kernel,
        sp,
        queries: nq,
        pieces,
        z_piece,
        sums,
    }
}

/// The first-dimension pass alone, on random words of a parameter set's shape: for benches
/// comparing the kernels on a realistic database without building one (no expansion, folding or
/// packing; the words are residues below the moduli, like an NTT-form database and expanded
/// queries).
#[doc(hidden)]
pub struct FirstDimensionBench {
    sp: &'static Params,
    db: Vec<u64>,
    queries: Vec<Vec<u64>>,
}

impl FirstDimensionBench {
    /// A database of `params`' size and `queries` query vectors (the most a pass can take),
    /// random from `seed`.
    pub fn random(params: &SchemeParams, queries: usize, seed: u64) -> Result<Self> {
        let sp = spiral_params(params)?;
        let dim0 = 1usize << sp.db_dim_1;
        let random = |words: usize, seed: u64| {
            let mut v = vec![0u64; words];
            v.par_chunks_mut(1 << 16).enumerate().for_each(|(i, c)| {
                let mut rng = StdRng::seed_from_u64(seed ^ ((i as u64) << 20));
                for w in c {
                    let lo = rng.gen_range(0..MODULI[0]);
                    let hi = rng.gen_range(0..MODULI[1]);
                    *w = lo | (hi << PACKED_OFFSET_2);
                }
            });
            v
        };
        Ok(Self {
            sp,
            db: random(params.db_words(), seed),
            queries: (0..queries)
                .map(|q| random(2 * dim0 * sp.poly_len, seed.wrapping_add(1 + q as u64)))
                .collect(),
        })
    }

    /// One pass over every slice for the first `queries` query vectors (at most those made)
    /// with `kernel`, slices a few at a time as
    /// [`Database::answer_batch`](super::Database::answer_batch) goes; a checksum of the sums.
    pub fn run(&self, kernel: Kernel, queries: usize) -> u64 {
        let queries = &self.queries[..queries.min(self.queries.len())];
        let v: Vec<&[u64]> = queries.iter().map(Vec::as_slice).collect();
        let slices = self.sp.instances * self.sp.n * self.sp.n;
        let group = rayon::current_num_threads().clamp(1, slices);
        let mut checksum = 0u64;
        for start in (0..slices).step_by(group) {
            let sums = first_dimension(
                self.sp,
                kernel,
                &self.db,
                &v,
                start..(start + group).min(slices),
            );
            for s in sums.sums.iter().flatten().flatten() {
                checksum = checksum.rotate_left(5) ^ s;
            }
        }
        checksum
    }
}
