//! A client's evaluation (public) keys as the server holds them: in their compact wire form,
//! expanded into spiral-rs's NTT form only for the batch that answers with them.
//!
//! The wire form is a 32-byte seed and one row of words per key column, 7 bytes a word (the
//! other row is the seed's pseudorandom expansion), without the first left expansion key, which
//! no answer reads. Expanded, every column becomes two rows of NTT words in two CRT moduli:
//! about 4.6 times the wire bytes (6.8 MB for the 1.49 MB keys of the 1M shape). Expanding
//! costs one ChaCha20 pass and two NTTs per key column, a small part of an answer
//! (`docs/performance.md`, "Smaller keys"), so the server keeps only the wire form and a key
//! cache holds 4.6 times the clients it would hold expanded.

use rand_chacha::{
    ChaCha20Rng,
    rand_core::{RngCore, SeedableRng},
};
use spiral_rs::{
    arith::log2_ceil_usize,
    client::{PublicParameters, SEED_LENGTH},
    poly::{PolyMatrix, PolyMatrixNTT, PolyMatrixRaw},
};

use super::{
    kernel::Kernel,
    ntt,
    params::SchemeParams,
    ring::{KEY_WORD_BYTES, check_words_of, compact_legacy_keys, public_key_bytes, spiral_params},
};
use crate::error::{CoreError, PirMessage, Result};

/// A client's public keys, checked, in their compact form.
pub struct EvalKeys {
    pub(super) params: SchemeParams,
    wire: Box<[u8]>,
}

impl std::fmt::Debug for EvalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalKeys")
            .field("params", &self.params)
            .field("bytes", &self.wire.len())
            .finish_non_exhaustive()
    }
}

impl EvalKeys {
    /// Checks public key bytes (their length and that every word is below the modulus) and
    /// keeps them. Keys in the legacy form, with the words no answer reads, are accepted and
    /// kept without those words.
    pub fn parse(params: &SchemeParams, bytes: &[u8]) -> Result<Self> {
        let sp = spiral_params(params)?;
        let bytes = compact_legacy_keys(sp, bytes);
        check_words_of(
            PirMessage::PublicKeys,
            &bytes,
            public_key_bytes(sp),
            KEY_WORD_BYTES,
            sp.modulus,
        )?;
        Ok(Self {
            params: *params,
            wire: bytes.into(),
        })
    }

    /// The parameters these keys were made for.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }

    /// Bytes these keys hold in memory while cached: their wire form and this value. Expanding
    /// them for a batch takes about four times the wire size more, for that batch only.
    pub fn resident_bytes(&self) -> usize {
        Self::resident_bytes_for(self.wire.len())
    }

    /// [`Self::resident_bytes`] of keys whose wire form is `wire_len` bytes, before parsing them
    /// (a cache makes room first).
    pub const fn resident_bytes_for(wire_len: usize) -> usize {
        wire_len + std::mem::size_of::<Self>()
    }

    /// Expands the keys as a batch does and drops them: for the benchmark of that cost only.
    #[doc(hidden)]
    pub fn danger_expand_for_bench(&self, kernel: Kernel) -> Result<()> {
        self.expanded(kernel).map(drop)
    }

    /// The keys in spiral-rs's form, for one batch: spiral-rs's `PublicParameters::deserialize`
    /// (the same ChaCha20 stream from the seed for each matrix's first row, the wire words for
    /// its other rows, in the same order), with the words read from their 7-byte form and the
    /// transforms in `kernel`'s NTT. `tests` below check it against spiral-rs's.
    pub(super) fn expanded(&self, kernel: Kernel) -> Result<PublicParameters<'static>> {
        let sp = spiral_params(&self.params)?;
        if self.wire.len() != public_key_bytes(sp) || sp.version != 0 || !sp.expand_queries {
            return Err(CoreError::Internal("public keys of the wrong size"));
        }
        let (seed, body) = self.wire.split_at(SEED_LENGTH);
        let seed: [u8; SEED_LENGTH] = seed
            .try_into()
            .map_err(|_| CoreError::Internal("public keys without a seed"))?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut words = body.chunks_exact(KEY_WORD_BYTES).map(|w| {
            let mut le = [0u8; 8];
            le[..KEY_WORD_BYTES].copy_from_slice(w);
            u64::from_le_bytes(le)
        });
        let mut raw = PolyMatrixRaw::zero(sp, 1, 1);
        // A matrix's first row from the seed's stream, its other rows from the wire; a matrix
        // the wire leaves out (`sent` false: the first left expansion key, which no answer
        // reads) still takes its first row's words from the stream, which the client drew
        // them from in this order, and is left zero.
        let mut matrix = |rows: usize, cols: usize, sent: bool| -> Result<PolyMatrixNTT<'static>> {
            if (raw.rows, raw.cols) != (rows, cols) {
                raw = PolyMatrixRaw::zero(sp, rows, cols);
            }
            let (first, rest) = raw.data.as_mut_slice().split_at_mut(cols * sp.poly_len);
            for w in first {
                // spiral-rs's `get_inv_from_rng`, word for word.
                *w = sp.modulus - (rng.next_u64() % sp.modulus);
            }
            if !sent {
                return Ok(PolyMatrixNTT::zero(sp, rows, cols));
            }
            for w in rest {
                *w = words
                    .next()
                    .ok_or(CoreError::Internal("public keys too short"))?;
            }
            let mut out = PolyMatrixNTT::zero(sp, rows, cols);
            ntt::to_ntt(kernel, &mut out, &raw);
            Ok(out)
        };
        let n = sp.n;
        let v_packing = (0..n)
            .map(|_| matrix(n + 1, sp.t_conv, true))
            .collect::<Result<Vec<_>>>()?;
        let v_expansion_left = (0..sp.g())
            .map(|round| matrix(2, sp.t_exp_left, round != 0))
            .collect::<Result<Vec<_>>>()?;
        let v_expansion_right = (0..sp.stop_round() + 1)
            .map(|_| matrix(2, sp.t_exp_right, true))
            .collect::<Result<Vec<_>>>()?;
        let v_conversion = vec![matrix(2, 2 * sp.t_conv, true)?];
        if words.next().is_some() {
            return Err(CoreError::Internal("public keys too long"));
        }
        debug_assert_eq!(
            sp.g(),
            log2_ceil_usize(sp.t_gsw * sp.db_dim_2 + sp.num_expanded())
        );
        Ok(PublicParameters {
            v_packing,
            v_expansion_left: Some(v_expansion_left),
            v_expansion_right: Some(v_expansion_right),
            v_conversion: Some(v_conversion),
            seed: Some(seed),
        })
    }
}

#[cfg(test)]
mod tests {
    use spiral_rs::{client::Query, server::process_query};

    use super::*;
    use crate::pir::{
        Database,
        client::{ClientSecret, client_for, keygen_spiral},
        ring::{PACKED_OFFSET_2, legacy_key_words, legacy_public_key_bytes, pack_key_words},
    };

    fn words(v: &[PolyMatrixNTT<'static>]) -> Vec<u64> {
        v.iter().flat_map(|m| m.as_slice().to_vec()).collect()
    }

    fn test_params() -> [SchemeParams; 2] {
        [
            SchemeParams::danger_test_only_small(),
            SchemeParams::vetted_presets()
                .map(|p| p.params)
                .find(|p| p.instances == 2)
                .unwrap(),
        ]
    }

    /// Ours against spiral-rs's `PublicParameters::deserialize` of every word: the same
    /// matrices, but for the first left expansion key, which the wire leaves out and ours
    /// leaves zero; from the current form and from the legacy one alike.
    #[test]
    fn expansion_equals_spiral_rs_on_every_kernel() {
        for params in test_params() {
            let sp = spiral_params(&params).unwrap();
            let (_, spiral) = keygen_spiral(sp).unwrap();
            let theirs = PublicParameters::deserialize(sp, &spiral);
            let wire = pack_key_words(sp, &spiral);
            let legacy = legacy_key_words(&spiral);
            assert_eq!(wire.len(), public_key_bytes(sp));
            assert_eq!(legacy.len(), legacy_public_key_bytes(sp));
            assert_eq!(
                legacy.len() - wire.len(),
                sp.t_exp_left * sp.poly_len * KEY_WORD_BYTES
            );
            let from_legacy = EvalKeys::parse(&params, &legacy).unwrap();
            assert_eq!(
                from_legacy.wire,
                EvalKeys::parse(&params, &wire).unwrap().wire
            );
            for kernel in Kernel::available() {
                let ours = from_legacy.expanded(kernel).unwrap();
                assert_eq!(
                    words(&ours.v_packing),
                    words(&theirs.v_packing),
                    "{kernel:?}"
                );
                let (ours_left, theirs_left) = (
                    ours.v_expansion_left.as_ref().unwrap(),
                    theirs.v_expansion_left.as_ref().unwrap(),
                );
                assert!(ours_left[0].as_slice().iter().all(|&w| w == 0));
                assert_eq!(words(&ours_left[1..]), words(&theirs_left[1..]), "{params}");
                for (a, b) in [
                    (&ours.v_expansion_right, &theirs.v_expansion_right),
                    (&ours.v_conversion, &theirs.v_conversion),
                ] {
                    assert_eq!(words(a.as_ref().unwrap()), words(b.as_ref().unwrap()));
                }
                assert_eq!(ours.seed, theirs.seed);
            }
        }
    }

    /// The words the wire leaves out are never read: spiral-rs's `process_query`, given every
    /// word, answers with the same bytes as the engine given the wire keys.
    #[test]
    fn answers_never_read_the_words_left_out() {
        for params in test_params() {
            let sp = spiral_params(&params).unwrap();
            let (secret, spiral): (ClientSecret, _) = keygen_spiral(sp).unwrap();
            let theirs = PublicParameters::deserialize(sp, &spiral);
            let keys = EvalKeys::parse(&params, &pack_key_words(sp, &spiral)).unwrap();
            let mut db = Database::zeroed(params);
            // Any words reduced modulo each CRT modulus, packed as the database packs them.
            for (i, w) in db.words.iter_mut().enumerate() {
                let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                *w = (x % sp.moduli[0]) | ((x >> 32) % sp.moduli[1]) << PACKED_OFFSET_2;
            }
            let query = client_for(sp, &secret)
                .generate_query(params.num_items() / 3)
                .serialize();
            let answer = db.answer(&keys, &query).unwrap();
            let reference = process_query(sp, &theirs, &Query::deserialize(sp, &query), &db.words);
            assert!(answer == reference, "{params}: answers differ");
        }
    }

    /// Neither form with a byte more or less parses.
    #[test]
    fn other_lengths_are_refused() {
        let params = SchemeParams::danger_test_only_small();
        let sp = spiral_params(&params).unwrap();
        let (_, spiral) = keygen_spiral(sp).unwrap();
        for mut bytes in [pack_key_words(sp, &spiral), legacy_key_words(&spiral)] {
            bytes.push(0);
            assert!(EvalKeys::parse(&params, &bytes).is_err());
            bytes.truncate(bytes.len() - 2);
            assert!(EvalKeys::parse(&params, &bytes).is_err());
        }
    }
}
