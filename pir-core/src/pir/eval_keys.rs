//! A client's evaluation (public) keys as the server holds them: in their compact wire form,
//! expanded into spiral-rs's NTT form only for the batch that answers with them.
//!
//! The wire form is a 32-byte seed and one row of words per key column, 7 bytes a word (the
//! other row is the seed's pseudorandom expansion). Expanded, every column becomes two rows of
//! NTT words in two CRT moduli: about 4.6 times the wire bytes (6.7 MB for the 1.46 MB keys of
//! the 1M shape). Expanding costs one ChaCha20 pass and two NTTs per key column, a small part
//! of an answer (`docs/performance.md`, "Smaller keys"), so the server keeps only the wire form
//! and a key cache holds 4.6 times the clients it would hold expanded.

use spiral_rs::client::PublicParameters;

use super::{
    params::SchemeParams,
    ring::{KEY_WORD_BYTES, check_words_of, public_key_bytes, spiral_params, unpack_key_words},
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
    /// keeps them.
    pub fn parse(params: &SchemeParams, bytes: &[u8]) -> Result<Self> {
        let sp = spiral_params(params)?;
        check_words_of(
            PirMessage::PublicKeys,
            bytes,
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
    pub fn danger_expand_for_bench(&self) -> Result<()> {
        self.expanded().map(drop)
    }

    /// The keys in spiral-rs's form, for one batch.
    pub(super) fn expanded(&self) -> Result<PublicParameters<'static>> {
        let sp = spiral_params(&self.params)?;
        let spiral = unpack_key_words(&self.wire);
        // `parse` checked the length, which is all `deserialize` asserts.
        if spiral.len() != sp.setup_bytes() {
            return Err(CoreError::Internal("public keys of the wrong size"));
        }
        Ok(PublicParameters::deserialize(sp, &spiral))
    }
}
