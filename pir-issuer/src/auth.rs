//! Who is asking: an MSP proven by its request signature, or the prover's operator by token.
//!
//! The prover keeps each registered MSP's public key as `<msp domain>.pub` in one directory
//! (`--msp-keys`), the file `pir-client msp-keygen` wrote. The file is read on each request,
//! so registering an MSP, rotating its key or removing it takes effect at once without a
//! restart; a request naming an MSP without a file is refused.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use pir_core::{
    VerifyingKey,
    identity::{MspKey, MspRequest},
};
use subtle::ConstantTimeEq;

use crate::error::IssuerError;

/// The registered MSPs' keys.
#[derive(Clone, Debug)]
pub struct MspRegistry {
    dir: PathBuf,
}

impl MspRegistry {
    /// The registry in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The key file of `msp` (a normalised domain: letters, digits, hyphens and dots only, so
    /// it names a file in the directory and nothing else).
    pub fn key_path(&self, msp: &str) -> PathBuf {
        self.dir.join(format!("{msp}.pub"))
    }

    fn key(&self, msp: &str) -> Result<VerifyingKey, IssuerError> {
        if msp.is_empty()
            || msp.starts_with('.')
            || !msp
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(IssuerError::UnknownMsp(msp.to_owned()));
        }
        let path = self.key_path(msp);
        match MspKey::read_public(&path) {
            Ok(key) => Ok(key),
            Err(pir_core::CoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(IssuerError::UnknownMsp(msp.to_owned()))
            }
            Err(e) => {
                tracing::error!(msp, error = %e, "an MSP's key file cannot be read");
                Err(IssuerError::UnknownMsp(msp.to_owned()))
            }
        }
    }

    /// Checks that `msp` signed `request` at `timestamp`, within `skew` of `now`.
    pub fn verify(
        &self,
        msp: &str,
        request: &MspRequest<'_>,
        timestamp: u64,
        signature: &[u8],
        now: u64,
        skew: Duration,
    ) -> Result<(), IssuerError> {
        check_skew(timestamp, now, skew)?;
        let signature: &[u8; 64] = signature
            .try_into()
            .map_err(|_| IssuerError::field("auth.signature", "must be 64 bytes"))?;
        let key = self.key(msp)?;
        request
            .verify(&key, msp, timestamp, signature)
            .map_err(|_| IssuerError::BadSignature(msp.to_owned()))
    }
}

/// Refuses a signed `timestamp` further than `skew` from the prover's clock `now`: what bounds
/// a replayed request, from an MSP or a user alike.
pub(crate) fn check_skew(timestamp: u64, now: u64, skew: Duration) -> Result<(), IssuerError> {
    if timestamp.abs_diff(now) > skew.as_secs() {
        return Err(IssuerError::ClockSkew { timestamp, now });
    }
    Ok(())
}

/// The operator's bearer token.
#[derive(Clone)]
pub struct OperatorToken(String);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(…)")
    }
}

impl OperatorToken {
    /// Reads the token from an owner-only file (its first line, trimmed; at least 16 bytes).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = pir_core::fs::read_secret(path)
            .map_err(|e| format!("--operator-token-file {}: {e}", path.display()))?;
        let token = String::from_utf8_lossy(&text)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if token.len() < 16 {
            return Err(format!(
                "--operator-token-file {}: the token must be at least 16 characters",
                path.display()
            ));
        }
        Ok(Self(token))
    }

    /// A token from its text (tests).
    pub fn new(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// Whether the request's `authorization: Bearer …` is this token (constant time).
    pub fn admits(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        let Some(given) = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        given.len() == self.0.len() && bool::from(given.as_bytes().ct_eq(self.0.as_bytes()))
    }
}
