//! The first dimension: one pass over the whole database for every query of a batch.

use rayon::prelude::*;
use spiral_rs::{
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw, from_ntt},
};

use super::kernel::{Kernel, row_dots};

/// Coefficients per piece of the first-dimension pass: a slice splits into several pieces so
/// every core has work whatever the number of slices, and each piece streams a long run of rows.
const Z_PIECE: usize = 256;

/// The first dimension's results for some slices and every query of a batch.
pub(super) struct FirstDim {
    sp: &'static Params,
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
                from_ntt(&mut raw, &ct);
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
        sp,
        queries: nq,
        pieces,
        z_piece,
        sums,
    }
}
