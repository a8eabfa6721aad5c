//! Key roles: issuers' keys (who sign mappings), the trust store of issuer keys a verifier
//! accepts, and their ids.

use std::collections::HashMap;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, KeyError, Result};

/// Domain-separation prefix of an issuer key id.
pub const ISSUER_ID_CONTEXT: &[u8] = b"pir-discovery/issuer-id/v1\0";

/// Identifies an issuer's Ed25519 key: the first 8 bytes of
/// `SHA-256(ISSUER_ID_CONTEXT || public key)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerId(pub [u8; 8]);

impl IssuerId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::new()
            .chain_update(ISSUER_ID_CONTEXT)
            .chain_update(key.as_bytes())
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }
}

impl std::fmt::Display for IssuerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::b64::encode(&self.0))
    }
}

/// The issuer keys a verifier trusts, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    keys: HashMap<IssuerId, VerifyingKey>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trusted key and returns its id. Weak (small-order) keys, which verify nothing
    /// honestly, and a second key with the same 64-bit id are refused.
    pub fn add(&mut self, key: VerifyingKey) -> Result<IssuerId> {
        if key.is_weak() {
            return Err(CoreError::key(KeyError::Weak));
        }
        let id = IssuerId::of(&key);
        match self.keys.get(&id) {
            Some(existing) if *existing != key => Err(CoreError::key(KeyError::DuplicateId(id))),
            _ => {
                self.keys.insert(id, key);
                Ok(id)
            }
        }
    }

    /// The key with that id, if trusted.
    pub fn get(&self, id: &IssuerId) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses a trust file: one base64url public key a line; blank lines and `#` comments skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let mut store = Self::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let on_line = |reason| CoreError::MalformedKey {
                path: None,
                line: Some(n + 1),
                reason,
            };
            let bytes: [u8; 32] =
                super::b64::decode_array(line).map_err(|e| on_line(KeyError::Base64(e)))?;
            let key =
                VerifyingKey::from_bytes(&bytes).map_err(|_| on_line(KeyError::NotEd25519))?;
            store.add(key).map_err(|e| match e {
                CoreError::MalformedKey { reason, .. } => on_line(reason),
                other => other,
            })?;
        }
        if store.is_empty() {
            return Err(CoreError::key(KeyError::NoPublicKey));
        }
        Ok(store)
    }

    /// Reads a trust file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }
}

/// An issuer's signing key with its id.
#[derive(Clone)]
pub struct IssuerKey {
    signing: SigningKey,
    pub(super) id: IssuerId,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// From an existing signing key.
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let id = IssuerId::of(&signing.verifying_key());
        Self { signing, id }
    }

    /// The key id.
    pub fn id(&self) -> IssuerId {
        self.id
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs arbitrary bytes (callers add their own domain separation).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The secret key file's text: the base64url seed on one line.
    pub fn to_secret_text(&self) -> String {
        format!("{}\n", super::b64::encode(self.signing.as_bytes()))
    }

    /// The public key file's text (a trust file with this one key).
    pub fn to_public_text(&self) -> String {
        self.public_text("issuer")
    }

    fn public_text(&self, role: &str) -> String {
        format!(
            "# pir-discovery {role} key {}\n{}\n",
            self.id,
            super::b64::encode(self.verifying_key().as_bytes())
        )
    }

    /// Parses a secret key file's text.
    pub fn parse_secret(text: &str) -> Result<Self> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or(CoreError::key(KeyError::Empty))?;
        let seed: [u8; 32] =
            super::b64::decode_array(line).map_err(|e| CoreError::key(KeyError::Base64(e)))?;
        Ok(Self::from_seed(&seed))
    }
}

/// A Discovery Provider's signing key: it signs snapshot headers, never mappings.
///
/// Its files have an issuer key's format; the type keeps the two roles apart, so a DP key
/// cannot sign a mapping and a wrong DP key is reported as one.
#[derive(Clone, Debug)]
pub struct DpKey(IssuerKey);

impl DpKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(IssuerKey::generate())
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(IssuerKey::from_seed(seed))
    }

    /// Parses a secret key file's text.
    pub fn parse_secret(text: &str) -> Result<Self> {
        IssuerKey::parse_secret(text).map(Self)
    }

    /// The key id.
    pub fn id(&self) -> IssuerId {
        self.0.id
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The secret key file's text: the base64url seed on one line.
    pub fn to_secret_text(&self) -> String {
        self.0.to_secret_text()
    }

    /// The public key file's text (a DP trust file with this one key).
    pub fn to_public_text(&self) -> String {
        self.0.public_text("DP")
    }

    /// Signs arbitrary bytes (callers add their own domain separation).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign_raw(message)
    }
}

/// The DP keys a verifier accepts snapshots from, by key id (a trust file of DP public keys).
#[derive(Clone, Debug, Default)]
pub struct DpKeys(TrustStore);

impl DpKeys {
    /// Parses a trust file of DP public keys (the format of [`TrustStore::parse`]).
    pub fn parse(text: &str) -> Result<Self> {
        TrustStore::parse(text).map(Self)
    }

    /// Reads a trust file of DP public keys.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        TrustStore::from_file(path).map(Self)
    }

    /// The key with that id, if trusted.
    pub fn get(&self, id: &IssuerId) -> Option<&VerifyingKey> {
        self.0.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip() {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let back = IssuerKey::parse_secret(&issuer.to_secret_text()).unwrap();
        assert_eq!(back.id(), issuer.id());
        let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
        assert!(trust.get(&issuer.id()).is_some());
        assert!(TrustStore::parse("# nothing\n").is_err());
        assert!(TrustStore::parse("not-base64!\n").is_err());
    }
}
