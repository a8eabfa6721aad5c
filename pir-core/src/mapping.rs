//! Authenticated mappings: one CPI reachable at one MSP, signed by the ID prover (issuer) that
//! verified the CPI, optionally counter-signed by the user's own key as consent.
//!
//! The signed bytes are specified in `docs/mapping-format.md`; this module is the reference
//! implementation of that document and `test_vectors/mapping_signatures.json` pins it.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{
    cpi::{Cpi, normalise_domain},
    error::{CoreError, Result},
};

/// Version byte that starts the canonical body.
pub const MAPPING_FORMAT_VERSION: u8 = 1;
/// Domain-separation prefix of the issuer's signature.
pub const ISSUER_SIG_CONTEXT: &[u8] = b"pir-discovery/mapping/v1/issuer\0";
/// Domain-separation prefix of the user's self-signature.
pub const USER_SIG_CONTEXT: &[u8] = b"pir-discovery/mapping/v1/user\0";
/// Domain-separation prefix of an issuer key id.
pub const ISSUER_ID_CONTEXT: &[u8] = b"pir-discovery/issuer-id/v1\0";

/// Longest PSI, in bytes.
pub const MAX_PSI_LEN: usize = 255;
/// Longest context label, in bytes.
pub const MAX_CONTEXT_LEN: usize = 32;

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
        f.write_str(&crate::b64::encode(&self.0))
    }
}

/// The user's consent: their public key and their signature over the mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserConsent {
    /// The user's Ed25519 public key.
    pub key: [u8; 32],
    /// The user's signature over `USER_SIG_CONTEXT || body`.
    pub sig: [u8; 64],
}

/// The fields a mapping's signatures cover: everything but the signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingFields {
    /// The identifier.
    pub cpi: Cpi,
    /// The MSP's domain, lower-case.
    pub msp: String,
    /// The platform-specific identifier at that MSP, if any.
    pub psi: Option<String>,
    /// A context or preference label (`work`, `personal`), if any.
    pub context: Option<String>,
    /// Start of validity, unix seconds, inclusive.
    pub not_before: u64,
    /// End of validity, unix seconds, inclusive.
    pub not_after: u64,
}

/// One authenticated mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The signed fields.
    pub fields: MappingFields,
    /// The issuer's key id.
    pub issuer: IssuerId,
    /// The issuer's signature over `ISSUER_SIG_CONTEXT || body`.
    pub issuer_sig: [u8; 64],
    /// The user's consent, if given.
    pub user: Option<UserConsent>,
}

impl MappingFields {
    /// Builds and validates the fields (normalises the MSP domain).
    pub fn new(
        cpi: Cpi,
        msp: &str,
        psi: Option<&str>,
        context: Option<&str>,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self> {
        let fields = Self {
            cpi,
            msp: normalise_domain(msp).map_err(|r| CoreError::field("msp", r))?,
            psi: psi.map(str::to_owned),
            context: context.map(str::to_owned),
            not_before,
            not_after,
        };
        fields.validate()?;
        Ok(fields)
    }

    /// Checks every field against the format's rules.
    pub fn validate(&self) -> Result<()> {
        if normalise_domain(&self.msp).as_deref() != Ok(self.msp.as_str()) {
            return Err(CoreError::field("msp", "must be a lower-case domain name"));
        }
        check_text("psi", self.psi.as_deref(), MAX_PSI_LEN)?;
        check_text("context", self.context.as_deref(), MAX_CONTEXT_LEN)?;
        if self.not_before > self.not_after {
            return Err(CoreError::field("not_before", "is after not_after"));
        }
        Ok(())
    }

    /// Signs the fields with the issuer's key and, if given, the user's key.
    pub fn sign(self, issuer: &IssuerKey, user: Option<&SigningKey>) -> Result<Mapping> {
        self.validate()?;
        let user_key = user.map(|k| k.verifying_key().to_bytes());
        let body = canonical_body(&self, &issuer.id, user_key.as_ref());
        let issuer_sig = issuer
            .signing
            .sign(&[ISSUER_SIG_CONTEXT, &body].concat())
            .to_bytes();
        let user = user.map(|k| UserConsent {
            key: k.verifying_key().to_bytes(),
            sig: k.sign(&[USER_SIG_CONTEXT, &body].concat()).to_bytes(),
        });
        Ok(Mapping {
            fields: self,
            issuer: issuer.id,
            issuer_sig,
            user,
        })
    }
}

fn check_text(field: &'static str, value: Option<&str>, max: usize) -> Result<()> {
    match value {
        None => Ok(()),
        Some(v) if v.is_empty() || v.len() > max => Err(CoreError::field(
            field,
            format!("must be 1 to {max} bytes when present"),
        )),
        Some(v) if v.chars().any(|c| c.is_control() || is_invisible_format(c)) => {
            Err(CoreError::field(
                field,
                "contains a control or invisible formatting character",
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Zero-width and bidirectional-control characters (Unicode category Cf that renders as nothing
/// or reorders text): they would let a PSI display as something it is not.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are bounded by validation (CPI <= 261, domains <= 253, PSI <= 255).
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical body both signatures cover (see `docs/mapping-format.md`).
pub fn canonical_body(
    fields: &MappingFields,
    issuer: &IssuerId,
    user_key: Option<&[u8; 32]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(MAPPING_FORMAT_VERSION);
    put_str(&mut out, fields.cpi.as_str());
    put_str(&mut out, &fields.msp);
    for opt in [&fields.psi, &fields.context] {
        match opt {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_str(&mut out, s);
            }
        }
    }
    out.extend_from_slice(&fields.not_before.to_le_bytes());
    out.extend_from_slice(&fields.not_after.to_le_bytes());
    out.extend_from_slice(&issuer.0);
    match user_key {
        None => out.push(0),
        Some(k) => {
            out.push(1);
            out.extend_from_slice(k);
        }
    }
    out
}

impl Mapping {
    /// The canonical body of this mapping.
    pub fn canonical_body(&self) -> Vec<u8> {
        canonical_body(
            &self.fields,
            &self.issuer,
            self.user.as_ref().map(|u| &u.key),
        )
    }

    /// The exact bytes the issuer signed.
    pub fn issuer_signed_bytes(&self) -> Vec<u8> {
        [ISSUER_SIG_CONTEXT, &self.canonical_body()].concat()
    }

    /// The exact bytes the user signed.
    pub fn user_signed_bytes(&self) -> Vec<u8> {
        [USER_SIG_CONTEXT, &self.canonical_body()].concat()
    }

    /// Verifies signatures and validity window against trusted issuers at time `now`.
    ///
    /// Each failure has its own error: [`CoreError::UnknownIssuer`],
    /// [`CoreError::BadIssuerSignature`], [`CoreError::BadUserSignature`],
    /// [`CoreError::NotYetValid`], [`CoreError::Expired`].
    pub fn verify(&self, trust: &TrustStore, now: u64) -> Result<()> {
        self.verify_signatures(trust)?;
        self.check_window(now)
    }

    /// Verifies the signatures only (no clock).
    pub fn verify_signatures(&self, trust: &TrustStore) -> Result<()> {
        self.fields.validate()?;
        let key = trust
            .get(&self.issuer)
            .ok_or_else(|| CoreError::UnknownIssuer(self.issuer.to_string()))?;
        let body = self.canonical_body();
        key.verify_strict(
            &[ISSUER_SIG_CONTEXT, &body].concat(),
            &Signature::from_bytes(&self.issuer_sig),
        )
        .map_err(|_| CoreError::BadIssuerSignature)?;
        if let Some(user) = &self.user {
            let user_key =
                VerifyingKey::from_bytes(&user.key).map_err(|_| CoreError::BadUserSignature)?;
            user_key
                .verify_strict(
                    &[USER_SIG_CONTEXT, &body].concat(),
                    &Signature::from_bytes(&user.sig),
                )
                .map_err(|_| CoreError::BadUserSignature)?;
        }
        Ok(())
    }

    /// Checks the validity window at `now`.
    pub fn check_window(&self, now: u64) -> Result<()> {
        if now < self.fields.not_before {
            return Err(CoreError::NotYetValid {
                not_before: self.fields.not_before,
                now,
            });
        }
        if now > self.fields.not_after {
            return Err(CoreError::Expired {
                not_after: self.fields.not_after,
                now,
            });
        }
        Ok(())
    }
}

/// A mapping whose signatures were checked against a trust store.
///
/// Only [`VerifiedMapping::new`] makes one, so code that takes it needs no second check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedMapping(Mapping);

impl VerifiedMapping {
    /// Verifies the mapping's signatures (not its validity window: builders drop expired
    /// mappings themselves and clients check windows at lookup time).
    pub fn new(mapping: Mapping, trust: &TrustStore) -> Result<Self> {
        mapping.verify_signatures(trust)?;
        Ok(Self(mapping))
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.0
    }

    /// The mapping, by value.
    pub fn into_inner(self) -> Mapping {
        self.0
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
            return Err(CoreError::MalformedKey(
                "weak (small-order) public key".into(),
            ));
        }
        let id = IssuerId::of(&key);
        match self.keys.get(&id) {
            Some(existing) if *existing != key => Err(CoreError::MalformedKey(format!(
                "two different keys share the id {id}"
            ))),
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
            let bytes: [u8; 32] = crate::b64::decode_array(line)
                .map_err(|e| CoreError::MalformedKey(format!("line {}: {e}", n + 1)))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
                CoreError::MalformedKey(format!("line {}: not an Ed25519 public key", n + 1))
            })?;
            store
                .add(key)
                .map_err(|e| CoreError::MalformedKey(format!("line {}: {e}", n + 1)))?;
        }
        if store.is_empty() {
            return Err(CoreError::MalformedKey(
                "no public key in trust file".into(),
            ));
        }
        Ok(store)
    }

    /// Reads a trust file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            CoreError::MalformedKey(m) => {
                CoreError::MalformedKey(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }
}

/// An issuer's signing key with its id.
#[derive(Clone)]
pub struct IssuerKey {
    signing: SigningKey,
    id: IssuerId,
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
        format!("{}\n", crate::b64::encode(self.signing.as_bytes()))
    }

    /// The public key file's text (a trust file with this one key).
    pub fn to_public_text(&self) -> String {
        format!(
            "# pir-discovery issuer key {}\n{}\n",
            self.id,
            crate::b64::encode(self.verifying_key().as_bytes())
        )
    }

    /// Parses a secret key file's text.
    pub fn parse_secret(text: &str) -> Result<Self> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| CoreError::MalformedKey("empty key file".into()))?;
        let seed: [u8; 32] = crate::b64::decode_array(line).map_err(CoreError::MalformedKey)?;
        Ok(Self::from_seed(&seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> MappingFields {
        MappingFields::new(
            Cpi::parse("tel:+14155550100").unwrap(),
            "Chat.Example",
            Some("@alice:chat.example"),
            Some("work"),
            1_000,
            2_000,
        )
        .unwrap()
    }

    #[test]
    fn each_verification_failure_is_distinct() {
        let issuer = IssuerKey::from_seed(&[7; 32]);
        let user = SigningKey::from_bytes(&[9; 32]);
        let mut trust = TrustStore::new();
        trust.add(issuer.verifying_key()).unwrap();
        let good = fields().sign(&issuer, Some(&user)).unwrap();
        assert_eq!(good.fields.msp, "chat.example");
        good.verify(&trust, 1_500).unwrap();

        assert!(matches!(
            good.verify(&TrustStore::new(), 1_500),
            Err(CoreError::UnknownIssuer(_))
        ));
        let mut bad = good.clone();
        bad.fields.msp = "evil.example".into();
        assert!(matches!(
            bad.verify(&trust, 1_500),
            Err(CoreError::BadIssuerSignature)
        ));
        let mut bad = good.clone();
        bad.user.as_mut().unwrap().sig[0] ^= 1;
        assert!(matches!(
            bad.verify(&trust, 1_500),
            Err(CoreError::BadUserSignature)
        ));
        assert!(matches!(
            good.verify(&trust, 999),
            Err(CoreError::NotYetValid { .. })
        ));
        assert!(matches!(
            good.verify(&trust, 2_001),
            Err(CoreError::Expired { .. })
        ));
    }

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
