//! The preprocessed database: items' plaintext encoded into NTT-form words.

use rayon::prelude::*;
use spiral_rs::{
    arith::recenter_mod,
    params::Params,
    poly::{PolyMatrix, PolyMatrixRaw},
};

use super::{
    params::{POLY_LEN, SchemeParams},
    ring::{PACKED_OFFSET_2, spiral_params},
};
use crate::error::{CoreError, Result};

/// The NTT-form database of one parameter set: what answering reads. Loading a snapshot for an
/// update only leaves it empty ([`Database::is_loaded`]).
pub struct Database {
    pub(super) params: SchemeParams,
    pub(super) words: Vec<u64>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("params", &self.params)
            .field("words", &self.words.len())
            .finish()
    }
}

impl Database {
    /// A database of zero words (every item encodes nothing yet).
    pub(crate) fn zeroed(params: SchemeParams) -> Self {
        Self {
            words: vec![0u64; params.db_words()],
            params,
        }
    }

    /// No words at all: a snapshot loaded for an update only.
    pub(crate) fn not_loaded(params: SchemeParams) -> Self {
        Self {
            params,
            words: Vec::new(),
        }
    }

    /// Words read from a file (their length is the caller's to check against the header).
    pub(crate) fn from_words(params: SchemeParams, words: Vec<u64>) -> Result<Self> {
        if words.len() != params.db_words() {
            return Err(CoreError::Internal(
                "database size does not match parameters",
            ));
        }
        Ok(Self { params, words })
    }

    /// The parameters the words were encoded for.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }

    /// True when the words are in memory (false after loading for an update only).
    pub fn is_loaded(&self) -> bool {
        !self.words.is_empty()
    }

    /// The words, in spiral-rs's layout.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

/// Words of one item in NTT form, in (instance, trial, coefficient) order.
fn item_ntt(sp: &'static Params, params: &SchemeParams, item: &[u8]) -> Vec<u64> {
    let chunks = sp.instances * sp.n * sp.n;
    let bpc = sp.bytes_per_chunk();
    let log2_p = params.log2_p() as usize;
    let mask = (1u64 << log2_p) - 1;
    let coeffs = bpc * 8 / log2_p;
    let mut out = Vec::with_capacity(chunks * POLY_LEN);
    let mut poly = PolyMatrixRaw::zero(sp, 1, 1);
    for k in 0..chunks {
        let start = (k * bpc).min(item.len());
        let end = ((k + 1) * bpc).min(item.len());
        let chunk = &item[start..end];
        let data = poly.data.as_mut_slice();
        data.fill(0);
        for (z, slot) in data.iter_mut().enumerate().take(coeffs) {
            let bit = z * log2_p;
            let byte = chunk.get(bit / 8).copied().unwrap_or(0) as u64;
            let c = (byte >> (bit % 8)) & mask;
            *slot = recenter_mod(c, sp.pt_modulus, sp.modulus);
        }
        let ntt = poly.ntt();
        let d = ntt.data.as_slice();
        out.extend((0..POLY_LEN).map(|z| d[z] | (d[POLY_LEN + z] << PACKED_OFFSET_2)));
    }
    out
}

/// The NTT-form words of items `indices` of `plaintext` (`num_items * item_bytes` bytes), one
/// vector per item in (instance, trial, coefficient) order. Items are independent.
pub(crate) fn item_words(
    params: &SchemeParams,
    plaintext: &[u8],
    indices: &[usize],
) -> Result<Vec<Vec<u64>>> {
    let sp = spiral_params(params)?;
    let item_bytes = params.item_bytes as usize;
    if plaintext.len() != params.num_items() * item_bytes {
        return Err(CoreError::Internal("item_words: plaintext size"));
    }
    if indices.iter().any(|&i| i >= params.num_items()) {
        return Err(CoreError::Internal("item_words: item out of range"));
    }
    Ok(indices
        .par_iter()
        .map(|&i| item_ntt(sp, params, &plaintext[i * item_bytes..(i + 1) * item_bytes]))
        .collect())
}

/// 64-bit words one item takes in the database.
pub(crate) fn words_per_item(params: &SchemeParams) -> usize {
    params.db_words() / params.num_items()
}

impl Database {
    /// Writes items' words (from [`item_words`]) into their places in the database.
    pub(crate) fn scatter_items(
        &mut self,
        indices: &[usize],
        words: &[impl AsRef<[u64]> + Sync],
    ) -> Result<()> {
        let (params, db) = (&self.params, self.words.as_mut_slice());
        let num_items = params.num_items();
        let per_item = words_per_item(params);
        if db.len() != params.db_words()
            || indices.len() != words.len()
            || indices.iter().any(|&i| i >= num_items)
            || words.iter().any(|w| w.as_ref().len() != per_item)
        {
            return Err(CoreError::Internal("scatter_items: sizes do not match"));
        }
        let dim0 = 1usize << params.nu_1;
        let num_per = 1usize << params.nu_2;
        // The database is stored plane by plane (instance, trial, coefficient); inside a plane,
        // item i sits at (i % num_per) * dim0 + i / num_per (spiral-rs's first-dimension order).
        db.par_chunks_mut(num_items)
            .enumerate()
            .for_each(|(plane, slice)| {
                for (&i, w) in indices.iter().zip(words) {
                    slice[(i % num_per) * dim0 + i / num_per] = w.as_ref()[plane];
                }
            });
        Ok(())
    }

    /// Encodes items `indices` of `plaintext` into the database, in batches, reporting
    /// `(items done, items in all)` to `progress`.
    ///
    /// Every item's NTT is independent, so re-encoding changed items only touches their words.
    pub(crate) fn encode_items(
        &mut self,
        plaintext: &[u8],
        indices: &[usize],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        const BATCH: usize = 1024;
        let mut done = 0;
        for batch in indices.chunks(BATCH) {
            let words = item_words(&self.params, plaintext, batch)?;
            self.scatter_items(batch, &words)?;
            done += batch.len();
            progress(done, indices.len());
        }
        Ok(())
    }
}
