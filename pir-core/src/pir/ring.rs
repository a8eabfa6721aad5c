//! The ring every preset shares, spiral-rs's `Params` for a parameter set, and the checks every
//! message passes before spiral-rs sees it.

use std::{
    borrow::Cow,
    collections::HashMap,
    ops::Range,
    sync::{Mutex, OnceLock},
};

use spiral_rs::{
    client::SEED_LENGTH,
    noise_estimate::{Paramset, get_noise_from_paramset, get_p_err},
    params::{Params, Q2_VALUES},
};

use super::params::{POLY_LEN, SchemeParams};
use crate::error::{CoreError, PirBytesError, PirMessage, Result};

/// The ring's fixed CRT moduli; q = their product.
pub(super) const MODULI: [u64; 2] = [268369921, 249561089];
/// Gaussian error width.
pub(super) const NOISE_WIDTH: f64 = 6.4;
/// Packed NTT words hold the second CRT residue in the high half.
pub(super) const PACKED_OFFSET_2: u32 = 32;

pub(super) fn spiral_params(p: &SchemeParams) -> Result<&'static Params> {
    static INTERNED: OnceLock<Mutex<HashMap<SchemeParams, &'static Params>>> = OnceLock::new();
    p.validate()?;
    let mut map = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(*map.entry(*p).or_insert_with(|| {
        Box::leak(Box::new(Params::init(
            POLY_LEN,
            &MODULI,
            NOISE_WIDTH,
            p.n as usize,
            p.p,
            p.q2_bits as u64,
            p.t_conv as usize,
            p.t_exp_left as usize,
            p.t_exp_right as usize,
            p.t_gsw as usize,
            true,
            p.nu_1 as usize,
            p.nu_2 as usize,
            p.instances as usize,
            p.item_bytes as usize,
            p.version as usize,
        )))
    }))
}

/// Byte sizes of the messages for a parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MessageSizes {
    /// The client's public (evaluation) keys.
    pub public_keys: usize,
    /// The public keys in their legacy form, still accepted from clients whose keys were made
    /// before the unused words were left out (0 for an engine without keys). Not reported.
    #[serde(skip)]
    pub legacy_public_keys: usize,
    /// One query.
    pub query: usize,
    /// One response.
    pub response: usize,
}

impl SchemeParams {
    /// log2 of the per-query correctness failure probability, by the Spiral authors' noise
    /// estimator (spiral-rs's `NoiseEstimator`, the model their parameter search used).
    ///
    /// Computed from the parameters alone: unlike answering, it interns nothing, so a search may
    /// call it for thousands of candidates.
    pub fn estimated_log2_failure(&self) -> Result<f64> {
        self.validate()?;
        let set = Paramset {
            n: self.n as usize,
            d: POLY_LEN,
            p: self.p,
            q: MODULI[0] * MODULI[1],
            sigma: NOISE_WIDTH,
            t_conv: self.t_conv as usize,
            t_exp_left: self.t_exp_left as usize,
            t_exp_right: self.t_exp_right as usize,
            t_gsw: self.t_gsw as usize,
            db_dim_1: self.nu_1 as usize,
            db_dim_2: self.nu_2 as usize,
            expand_queries: true,
        };
        let q2 = Q2_VALUES[self.q2_bits as usize];
        Ok(get_p_err(&set, get_noise_from_paramset(&set), q2))
    }

    /// Sizes of the public keys, a query and a response.
    pub fn message_sizes(&self) -> Result<MessageSizes> {
        let sp = spiral_params(self)?;
        Ok(MessageSizes {
            public_keys: public_key_bytes(sp),
            legacy_public_keys: legacy_public_key_bytes(sp),
            query: sp.query_bytes(),
            response: response_bytes(sp),
        })
    }

    /// Checks one query's bytes as answering would, without answering: the exact length and
    /// every word below the modulus. A server calls it at the door, so that a malformed query is
    /// refused before it takes a slot or tokens, and never fails a batch of honest ones.
    pub fn check_query(&self, query: &[u8]) -> Result<()> {
        let sp = spiral_params(self)?;
        check_words(PirMessage::Query, query, sp.query_bytes(), sp.modulus)
    }
}

fn log2_ceil(x: u64) -> usize {
    (u64::BITS - (x - 1).leading_zeros()) as usize
}

pub(super) fn response_bytes(sp: &Params) -> usize {
    let q1_bits = log2_ceil(4 * sp.pt_modulus);
    let bits = sp.instances
        * (sp.q2_bits as usize * sp.n * sp.poly_len + q1_bits * sp.n * sp.n * sp.poly_len);
    bits.div_ceil(64) * 8
}

/// Bytes a public-key word takes on the wire: every word is reduced mod q < 2^56, so its top
/// byte, always zero in spiral-rs's 8-byte form, is not sent (public keys are 7/8 the size).
pub(super) const KEY_WORD_BYTES: usize = 7;
const _: () = assert!((MODULI[0] as u128 * MODULI[1] as u128) < 1u128 << (8 * KEY_WORD_BYTES));

/// The words of spiral-rs's serialised public keys (after the seed) that no answer reads: the
/// second row of the first left expansion key. Expansion's round 0 switches its one
/// ciphertext with the right key, and the left keys serve rounds 1 and later only (spiral-rs's
/// `coefficient_expansion`), so the client does not send these `t_exp_left` polynomials: a
/// smaller upload for the same keys. They follow the packing keys' rows.
fn unused_key_words(sp: &Params) -> Range<usize> {
    let start = sp.n * sp.n * sp.t_conv * sp.poly_len;
    start..start + sp.t_exp_left * sp.poly_len
}

/// Bytes of a client's public keys on the wire: the seed, then every word that an answer
/// reads, in 7 bytes.
pub(super) fn public_key_bytes(sp: &Params) -> usize {
    legacy_public_key_bytes(sp) - unused_key_words(sp).len() * KEY_WORD_BYTES
}

/// Bytes of the public keys clients sent before the unused words were dropped (every word
/// spiral-rs serialises, in 7 bytes): still accepted, so that stored keys keep working.
pub(super) fn legacy_public_key_bytes(sp: &Params) -> usize {
    SEED_LENGTH + (sp.setup_bytes() - SEED_LENGTH) / 8 * KEY_WORD_BYTES
}

/// spiral-rs's serialised public keys (seed, 8-byte little-endian words) into the wire form:
/// 7-byte words, without the [`unused_key_words`].
pub(super) fn pack_key_words(sp: &Params, spiral: &[u8]) -> Vec<u8> {
    let (seed, words) = spiral.split_at(SEED_LENGTH.min(spiral.len()));
    let unused = unused_key_words(sp);
    let mut out = Vec::with_capacity(public_key_bytes(sp));
    out.extend_from_slice(seed);
    for (i, w) in words.chunks_exact(8).enumerate() {
        if !unused.contains(&i) {
            out.extend_from_slice(&w[..KEY_WORD_BYTES]);
        }
    }
    out
}

/// Legacy wire keys ([`legacy_public_key_bytes`] long) in the current form: the unused words
/// dropped. Any other length is returned as it is, for the length check to refuse.
pub(super) fn compact_legacy_keys<'a>(sp: &Params, wire: &'a [u8]) -> Cow<'a, [u8]> {
    if wire.len() != legacy_public_key_bytes(sp) {
        return Cow::Borrowed(wire);
    }
    let unused = unused_key_words(sp);
    let (seed, body) = wire.split_at(SEED_LENGTH);
    let mut out = Vec::with_capacity(public_key_bytes(sp));
    out.extend_from_slice(seed);
    out.extend_from_slice(&body[..unused.start * KEY_WORD_BYTES]);
    out.extend_from_slice(&body[unused.end * KEY_WORD_BYTES..]);
    Cow::Owned(out)
}

/// Wire keys in the legacy form, with zero words where the unused ones were: keys as an older
/// client would send them (answers never read those words), for tests of that form.
pub(crate) fn legacy_form(params: &SchemeParams, wire: &[u8]) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    if wire.len() != public_key_bytes(sp) {
        return Err(CoreError::Internal("public keys of the wrong size"));
    }
    let at = SEED_LENGTH + unused_key_words(sp).start * KEY_WORD_BYTES;
    let mut out = wire[..at].to_vec();
    out.resize(at + unused_key_words(sp).len() * KEY_WORD_BYTES, 0);
    out.extend_from_slice(&wire[at..]);
    Ok(out)
}

/// spiral-rs's serialised public keys in the legacy wire form (every word, 7 bytes each): what
/// clients sent before the unused words were dropped, for the tests of that form.
#[cfg(test)]
pub(super) fn legacy_key_words(spiral: &[u8]) -> Vec<u8> {
    let (seed, words) = spiral.split_at(SEED_LENGTH.min(spiral.len()));
    let mut out = Vec::with_capacity(seed.len() + words.len() / 8 * KEY_WORD_BYTES);
    out.extend_from_slice(seed);
    for w in words.chunks_exact(8) {
        out.extend_from_slice(&w[..KEY_WORD_BYTES]);
    }
    out
}

/// Legacy wire keys back into spiral-rs's form (the inverse of [`legacy_key_words`]): for
/// tests against spiral-rs's own deserialisation (`EvalKeys` reads the 7-byte words itself).
#[cfg(test)]
pub(super) fn unpack_key_words(wire: &[u8]) -> Vec<u8> {
    let (seed, words) = wire.split_at(SEED_LENGTH.min(wire.len()));
    let mut out = Vec::with_capacity(seed.len() + words.len() / KEY_WORD_BYTES * 8);
    out.extend_from_slice(seed);
    for w in words.chunks_exact(KEY_WORD_BYTES) {
        out.extend_from_slice(w);
        out.push(0);
    }
    out
}

/// Checks a seed-prefixed buffer of u64 words: exact length, every word reduced mod q.
pub(super) fn check_words(
    what: PirMessage,
    bytes: &[u8],
    expected: usize,
    modulus: u64,
) -> Result<()> {
    check_words_of(what, bytes, expected, 8, modulus)
}

/// Checks a seed-prefixed buffer of little-endian words of `word_bytes` bytes: exact length,
/// every word reduced mod q.
pub(super) fn check_words_of(
    what: PirMessage,
    bytes: &[u8],
    expected: usize,
    word_bytes: usize,
    modulus: u64,
) -> Result<()> {
    if bytes.len() != expected {
        return Err(CoreError::pir_bytes(
            what,
            PirBytesError::Length {
                expected,
                got: bytes.len(),
            },
        ));
    }
    let body = &bytes[SEED_LENGTH..];
    if !(1..=8).contains(&word_bytes) || !body.len().is_multiple_of(word_bytes) {
        return Err(CoreError::Internal("PIR message body not whole words"));
    }
    let word = |w: &[u8]| {
        let mut le = [0u8; 8];
        le[..w.len()].copy_from_slice(w);
        u64::from_le_bytes(le)
    };
    if let Some(pos) = body
        .chunks_exact(word_bytes)
        .position(|w| word(w) >= modulus)
    {
        return Err(CoreError::pir_bytes(
            what,
            PirBytesError::Unreduced { word: pos },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_words_pack_and_unpack() {
        let mut spiral = vec![7u8; SEED_LENGTH];
        for w in [0u64, 1, MODULI[0] * MODULI[1] - 1, 0x00ab_cdef_0123_4567] {
            spiral.extend_from_slice(&w.to_le_bytes());
        }
        let wire = legacy_key_words(&spiral);
        assert_eq!(wire.len(), SEED_LENGTH + 4 * KEY_WORD_BYTES);
        assert_eq!(unpack_key_words(&wire), spiral);
        let q = MODULI[0] * MODULI[1];
        check_words_of(PirMessage::PublicKeys, &wire, wire.len(), KEY_WORD_BYTES, q).unwrap();
        // The largest 7-byte word is above q: refused, naming the word.
        let mut bad = wire.clone();
        bad[SEED_LENGTH + 2 * KEY_WORD_BYTES..][..KEY_WORD_BYTES].fill(0xff);
        let err =
            check_words_of(PirMessage::PublicKeys, &bad, bad.len(), KEY_WORD_BYTES, q).unwrap_err();
        assert!(err.to_string().contains("word 2"), "{err}");
    }

    #[test]
    fn failure_estimate_is_spiral_rs_estimator() {
        use spiral_rs::noise_estimate::NoiseEstimator;
        for preset in SchemeParams::vetted_presets().chain(SchemeParams::store_presets()) {
            let p = preset.params;
            let ours = p.estimated_log2_failure().unwrap();
            let theirs = spiral_params(&p).unwrap().estimate_log2_err_prob();
            assert_eq!(ours, theirs, "{p}");
            assert!(ours <= -40.0, "{p}: {ours}");
        }
    }
}
