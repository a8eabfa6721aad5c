//! Folding over the further dimensions, and the gadget decomposition it shares with expansion.

use spiral_rs::{
    gadget::get_bits_per,
    params::Params,
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw},
};

use super::{kernel::Kernel, ntt, poly_ops};

/// spiral-rs's `gadget_invert_rdim`, digit plane by digit plane (the same digits, written in
/// order instead of one coefficient at a time).
pub(super) fn gadget_invert_rows(
    sp: &Params,
    out: &mut PolyMatrixRaw,
    inp: &PolyMatrixRaw,
    rdim: usize,
) {
    let digits = out.rows / rdim;
    let bits_per = get_bits_per(sp, digits);
    let mask = (1u64 << bits_per) - 1;
    for col in 0..inp.cols {
        for j in 0..rdim {
            let src = inp.get_poly(j, col);
            for k in 0..digits {
                let shift = k * bits_per;
                let dst = out.get_poly_mut(j + k * rdim, col);
                if shift >= 64 {
                    dst.fill(0);
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = (v >> shift) & mask;
                    }
                }
            }
        }
    }
}

/// Folds `v_cts` (2^nu_2 ciphertexts) over the further dimensions with the query's GSW
/// ciphertexts: spiral-rs's `fold_ciphertexts` with one external product per step instead of two.
///
/// spiral-rs selects with `(G - C) G^-1(c0) + C G^-1(c1)`. Since `G G^-1(c0) = c0` exactly, that
/// is `c0 + C (G^-1(c1) - G^-1(c0))` modulo q: the same value (so byte-identical answers, which
/// `tests/batch.rs` checks), with half the gadget transforms and products.
pub(super) fn fold(
    sp: &'static Params,
    kernel: Kernel,
    v_cts: &mut [PolyMatrixRaw<'static>],
    v_folding: &[PolyMatrixNTT],
) {
    let further_dims = v_cts.len().trailing_zeros() as usize;
    if further_dims == 0 {
        return;
    }
    let q = sp.modulus;
    let rows = v_folding[0].cols;
    let mut ginv_0 = PolyMatrixRaw::zero(sp, rows, 1);
    let mut ginv_diff = PolyMatrixRaw::zero(sp, rows, 1);
    let mut diff_ntt = PolyMatrixNTT::zero(sp, rows, 1);
    let mut prod = PolyMatrixNTT::zero(sp, 2, 1);
    let mut prod_raw = PolyMatrixRaw::zero(sp, 2, 1);
    let mut scratch = ntt::Scratch::new(sp);
    let mut num_per = v_cts.len();
    for cur_dim in 0..further_dims {
        num_per /= 2;
        let gsw = &v_folding[further_dims - 1 - cur_dim];
        for i in 0..num_per {
            gadget_invert_rows(sp, &mut ginv_0, &v_cts[i], 2);
            gadget_invert_rows(sp, &mut ginv_diff, &v_cts[num_per + i], 2);
            // Digits are below the gadget base, so each difference is one wrap at most.
            for (d, &g0) in ginv_diff
                .data
                .as_mut_slice()
                .iter_mut()
                .zip(ginv_0.data.as_slice())
            {
                *d = if *d >= g0 { *d - g0 } else { *d + q - g0 };
            }
            ntt::to_ntt(kernel, &mut diff_ntt, &ginv_diff);
            poly_ops::multiply(kernel, &mut prod, gsw, &diff_ntt);
            ntt::from_ntt(kernel, &mut prod_raw, &prod, &mut scratch);
            for (c, &p) in v_cts[i]
                .data
                .as_mut_slice()
                .iter_mut()
                .zip(prod_raw.data.as_slice())
            {
                let s = *c + p;
                *c = if s >= q { s - q } else { s };
            }
        }
    }
}
