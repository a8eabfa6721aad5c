//! A client's evaluation (public) keys as the server holds them.

use spiral_rs::client::PublicParameters;

use super::{
    params::SchemeParams,
    ring::{check_words, spiral_params},
};
use crate::error::{PirMessage, Result};

/// A client's public keys, deserialised and ready for answering.
pub struct EvalKeys {
    pub(super) params: SchemeParams,
    pub(super) inner: PublicParameters<'static>,
}

impl std::fmt::Debug for EvalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalKeys")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl EvalKeys {
    /// Checks and deserialises public key bytes.
    pub fn parse(params: &SchemeParams, bytes: &[u8]) -> Result<Self> {
        let sp = spiral_params(params)?;
        check_words(PirMessage::PublicKeys, bytes, sp.setup_bytes(), sp.modulus)?;
        Ok(Self {
            params: *params,
            inner: PublicParameters::deserialize(sp, bytes),
        })
    }

    /// The parameters these keys were made for.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }
}
