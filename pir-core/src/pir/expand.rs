//! Query expansion: one query ciphertext into the first dimension's vector and the folding
//! dimensions' GSW ciphertexts.

use rayon::prelude::*;
use spiral_rs::{
    aligned_memory::AlignedMemory64,
    arith::log2_ceil_usize,
    client::{PublicParameters, Query},
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw, automorph},
    server::regev_to_gsw,
};

use super::{fold::gadget_invert_rows, kernel::Kernel, ntt, poly_ops, ring::PACKED_OFFSET_2};
use crate::error::{CoreError, Result};

/// Scratch matrices for one key switch of the coefficient expansion, reused across switches.
struct SwitchScratch {
    ct_0: PolyMatrixRaw<'static>,
    ct_auto_0: PolyMatrixRaw<'static>,
    ct_auto_1_ntt: PolyMatrixNTT<'static>,
    w_times_ginv_ct: PolyMatrixNTT<'static>,
    ginv_left: PolyMatrixRaw<'static>,
    ginv_left_ntt: PolyMatrixNTT<'static>,
    ginv_right: PolyMatrixRaw<'static>,
    ginv_right_ntt: PolyMatrixNTT<'static>,
    inverse: ntt::Scratch,
}

impl SwitchScratch {
    fn new(sp: &'static Params) -> Self {
        Self {
            ct_0: PolyMatrixRaw::zero(sp, 1, 1),
            ct_auto_0: PolyMatrixRaw::zero(sp, 1, 1),
            ct_auto_1_ntt: PolyMatrixNTT::zero(sp, 1, 1),
            w_times_ginv_ct: PolyMatrixNTT::zero(sp, 2, 1),
            ginv_left: PolyMatrixRaw::zero(sp, sp.t_exp_left, 1),
            ginv_left_ntt: PolyMatrixNTT::zero(sp, sp.t_exp_left, 1),
            ginv_right: PolyMatrixRaw::zero(sp, sp.t_exp_right, 1),
            ginv_right_ntt: PolyMatrixNTT::zero(sp, sp.t_exp_right, 1),
            inverse: ntt::Scratch::new(sp),
        }
    }
}

/// spiral-rs's `coefficient_expansion` with the key switch's scratch allocated once per rayon
/// job instead of once per ciphertext (about 1 MB zeroed each time), plane-wise gadget
/// decomposition, and the automorphism of each ciphertext's second row taken in the NTT domain
/// (a permutation, [`ntt::automorph_ntt`]) where spiral-rs transforms it back, applies it and
/// transforms it again: two transforms of the seven (t_exp 4) of a switch saved. The first row
/// is transformed back, as its gadget digits need. The words are the same: every row is
/// reduced after the sum, and the permuted words are congruent to spiral-rs's.
#[allow(clippy::too_many_arguments)]
fn coefficient_expansion(
    sp: &'static Params,
    kernel: Kernel,
    v: &mut [PolyMatrixNTT<'static>],
    g: usize,
    stop_round: usize,
    v_w_left: &[PolyMatrixNTT],
    v_w_right: &[PolyMatrixNTT],
    v_neg1: &[PolyMatrixNTT],
    max_bits_to_gen_right: usize,
) -> Result<()> {
    let poly_len = sp.poly_len;
    let row = sp.crt_count * poly_len;
    for r in 0..g {
        let num_in = 1usize << r;
        let t = poly_len / (1 << r) + 1;
        let perm = &ntt::automorph_permutation(sp, t)?;
        let neg1 = &v_neg1[r];
        let expand = |scratch: &mut SwitchScratch, (i, v_i): (usize, &mut PolyMatrixNTT)| {
            let odd = i % 2 == 1;
            if stop_round > 0
                && odd
                && (r > stop_round || (r == stop_round && i / 2 >= max_bits_to_gen_right))
            {
                return;
            }
            let s = scratch;
            let (w, gi_ct, gi_ct_ntt) = if r != 0 && !odd {
                (&v_w_left[r], &mut s.ginv_left, &mut s.ginv_left_ntt)
            } else {
                (&v_w_right[r], &mut s.ginv_right, &mut s.ginv_right_ntt)
            };
            let (a, b) = v_i.data.as_slice().split_at(row);
            ntt::from_ntt_poly(kernel, sp, s.ct_0.data.as_mut_slice(), a, &mut s.inverse);
            automorph(&mut s.ct_auto_0, &s.ct_0, t);
            gadget_invert_rows(sp, gi_ct, &s.ct_auto_0, 1);
            ntt::to_ntt_no_reduce(kernel, gi_ct_ntt, gi_ct);
            ntt::automorph_ntt(sp, perm, s.ct_auto_1_ntt.data.as_mut_slice(), b);
            poly_ops::multiply(kernel, &mut s.w_times_ginv_ct, w, gi_ct_ntt);
            // v_i += W G^-1(a) + (0, b), every word reduced.
            let auto_1 = s.ct_auto_1_ntt.data.as_slice();
            let wg = s.w_times_ginv_ct.data.as_slice();
            let (row_0, row_1) = v_i.data.as_mut_slice().split_at_mut(row);
            let (wg_0, wg_1) = wg.split_at(row_0.len());
            for (d, &w) in row_0.iter_mut().zip(wg_0) {
                *d += w;
            }
            for ((d, &w), &b) in row_1.iter_mut().zip(wg_1).zip(auto_1) {
                *d += w + b;
            }
            poly_ops::reduce_residues(kernel, sp, row_0);
            poly_ops::reduce_residues(kernel, sp, row_1);
        };
        let (src, dest) = v.split_at_mut(num_in);
        src.par_iter_mut()
            .zip(dest.par_iter_mut())
            .for_each(|(s, d)| poly_ops::scalar_multiply(kernel, d, neg1, s));
        // Both halves in one parallel loop (spiral-rs runs one after the other): in the first
        // rounds a half holds one or two ciphertexts, and switches with the long right gadget
        // cost several times the others, so cores would wait. `i` is the index within a half.
        v[..2 * num_in].par_iter_mut().enumerate().for_each_init(
            || SwitchScratch::new(sp),
            |scratch, (k, v_i)| expand(scratch, (k % num_in, v_i)),
        );
    }
    Ok(())
}

/// spiral-rs's `reorient_reg_ciphertexts` for the first-dimension ciphertexts `v[2 * j]`
/// (`j < dim0`), in parallel over coefficients and without copying them first: out[z][j][row]
/// packs the residues modulo both CRT moduli into one word.
fn reorient(sp: &Params, out: &mut [u64], v: &[PolyMatrixNTT], dim0: usize) {
    let poly_len = sp.poly_len;
    out.par_chunks_mut(2 * dim0)
        .enumerate()
        .for_each(|(z, words)| {
            for (j, pair) in words.chunks_exact_mut(2).enumerate() {
                let data = v[2 * j].data.as_slice();
                for (row, w) in pair.iter_mut().enumerate() {
                    let base = row * sp.crt_count * poly_len;
                    let lo = data[base + z] % sp.moduli[0];
                    let hi = data[base + poly_len + z] % sp.moduli[1];
                    *w = lo | (hi << PACKED_OFFSET_2);
                }
            }
        });
}

/// spiral-rs's `expand_query` on [`coefficient_expansion`] above: the query's first-dimension
/// vector (reoriented for the database pass) and its GSW ciphertexts for the folding.
pub(super) fn expand(
    sp: &'static Params,
    kernel: Kernel,
    keys: &PublicParameters<'static>,
    query: &Query<'static>,
) -> Result<(AlignedMemory64, Vec<PolyMatrixNTT<'static>>)> {
    let missing = || CoreError::Internal("public keys lack expansion keys");
    let dim0 = 1usize << sp.db_dim_1;
    let further_dims = sp.db_dim_2;
    let right_expanded = sp.t_gsw * further_dims;
    let g = log2_ceil_usize(right_expanded + dim0);
    let stop_round = log2_ceil_usize(right_expanded);
    let ct = query.ct.as_ref().ok_or_else(missing)?;
    let mut v: Vec<PolyMatrixNTT<'static>> = (0..1usize << g)
        .into_par_iter()
        .map(|_| PolyMatrixNTT::zero(sp, 2, 1))
        .collect();
    v[0].copy_into(&ct.ntt(), 0, 0);
    let v_conversion = &keys.v_conversion.as_ref().ok_or_else(missing)?[0];
    let v_w_left = keys.v_expansion_left.as_ref().ok_or_else(missing)?;
    let v_w_right = keys.v_expansion_right.as_ref().unwrap_or(v_w_left);
    let v_neg1 = sp.get_v_neg1();
    // Validation requires nu_2 >= 1, so the folding bits are always expanded.
    coefficient_expansion(
        sp,
        kernel,
        &mut v,
        g,
        stop_round,
        v_w_left,
        v_w_right,
        &v_neg1,
        right_expanded,
    )?;
    let v_gsw_inp: Vec<PolyMatrixNTT> = (0..right_expanded).map(|i| v[2 * i + 1].clone()).collect();
    let mut v_reg_reoriented = AlignedMemory64::new(dim0 * 2 * sp.poly_len);
    reorient(sp, v_reg_reoriented.as_mut_slice(), &v, dim0);
    let mut v_folding: Vec<PolyMatrixNTT<'static>> = (0..further_dims)
        .map(|_| PolyMatrixNTT::zero(sp, 2, 2 * sp.t_gsw))
        .collect();
    regev_to_gsw(&mut v_folding, &v_gsw_inp, v_conversion, sp, 1, 0);
    Ok((v_reg_reoriented, v_folding))
}
