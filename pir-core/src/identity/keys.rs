//! Key roles: issuers' keys (who sign mappings), the trust store of issuer keys a verifier
//! accepts, the DP's signing key and the DP keys a verifier accepts, their ids, and their files.
//!
//! Secret key files are PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), public key and trust files
//! SPKI PEM (`-----BEGIN PUBLIC KEY-----`, one block a key), through ed25519-dalek's `pkcs8`
//! and `pem` features: the two forms cannot be mistaken for each other, and each is refused
//! where the other is expected. Every public key, from a file or from a mapping, is decoded by
//! [`decode_public_key`], which refuses non-canonical encodings and small-order points.

use std::{collections::HashMap, path::Path};

use ed25519_dalek::{
    Signer, SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
        PublicKeyBytes, spki::der::pem::LineEnding,
    },
};
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

/// Which key a file holds, for saying which file to give instead when the wrong one is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRole {
    /// An issuer's key (signs mappings).
    Issuer,
    /// The Discovery Provider's key (signs snapshot headers).
    Dp,
    /// An MSP's key (signs its requests to an ID prover).
    Msp,
    /// A user's key (counter-signs their own mappings: the self-signature).
    User,
}

impl KeyRole {
    /// The command that writes this role's key files.
    pub fn keygen(self) -> &'static str {
        match self {
            Self::Issuer => "pir-server issuer-keygen",
            Self::Dp => "pir-server dp-keygen",
            Self::Msp => "pir-client msp-keygen",
            Self::User => "pir-client user-keygen",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Dp => "DP",
            Self::Msp => "MSP",
            Self::User => "user",
        }
    }
}

/// Decodes a 32-byte Ed25519 public key as RFC 8032 section 5.1.3 requires of a verifier:
/// the encoding must be canonical (y below p = 2^255 - 19; no sign bit on x = 0) and the point
/// on the curve; and a small-order ("weak") point, which verifies nothing honestly, is refused.
/// ed25519-dalek on its own reduces y silently, so that 19 encodings name some keys twice.
pub fn decode_public_key(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotEd25519)?;
    if key.to_edwards().compress().as_bytes() != bytes {
        return Err(KeyError::NonCanonical);
    }
    if key.is_weak() {
        return Err(KeyError::Weak);
    }
    Ok(key)
}

/// One PEM block of a key file: its label, the line it starts on, and its text.
struct PemBlock {
    label: String,
    line: usize,
    text: String,
}

/// A problem at a line of a key file.
type AtLine = (Option<usize>, KeyError);

/// Splits a key file into its PEM blocks. Outside blocks only blank lines and `#` comments may
/// appear; a line of the old one-line form is reported as such.
fn pem_blocks(text: &str, role: KeyRole, secret: bool) -> Result<Vec<PemBlock>, AtLine> {
    let mut blocks = Vec::new();
    let mut open: Option<PemBlock> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        match &mut open {
            Some(block) => {
                let end = line == format!("-----END {}-----", block.label);
                if !end && line.starts_with("-----") {
                    return Err((Some(block.line), KeyError::Unterminated));
                }
                block.text.push_str(line);
                block.text.push('\n');
                if end {
                    blocks.extend(open.take());
                }
            }
            None if line.is_empty() || line.starts_with('#') => {}
            None => {
                let label = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                    .filter(|l| !l.is_empty());
                match label {
                    Some(label) => {
                        open = Some(PemBlock {
                            label: label.to_owned(),
                            line: n,
                            text: format!("{line}\n"),
                        })
                    }
                    None if super::b64::decode_array::<32>(line).is_ok() => {
                        return Err((Some(n), KeyError::OneLine(role)));
                    }
                    None => return Err((Some(n), KeyError::NotPem { secret })),
                }
            }
        }
    }
    match open {
        Some(block) => Err((Some(block.line), KeyError::Unterminated)),
        None => Ok(blocks),
    }
}

fn at_line((line, reason): AtLine) -> CoreError {
    CoreError::MalformedKey {
        path: None,
        line,
        reason,
    }
}

fn is_secret_label(label: &str) -> bool {
    label == "PRIVATE KEY" || label == "ENCRYPTED PRIVATE KEY"
}

/// Parses the public key files' form: one or more `PUBLIC KEY` blocks.
fn parse_public_keys(text: &str, role: KeyRole) -> Result<TrustStore> {
    let mut store = TrustStore::new();
    for block in pem_blocks(text, role, false).map_err(at_line)? {
        let on_line = |reason| at_line((Some(block.line), reason));
        if is_secret_label(&block.label) {
            return Err(on_line(KeyError::SecretForPublic(role)));
        }
        if block.label != "PUBLIC KEY" {
            return Err(on_line(KeyError::OtherPem(block.label)));
        }
        let bytes = PublicKeyBytes::from_public_key_pem(&block.text).map_err(|e| {
            on_line(KeyError::BadPem {
                label: "PUBLIC KEY",
                detail: e.to_string(),
            })
        })?;
        let key = decode_public_key(&bytes.0).map_err(on_line)?;
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

/// Parses the secret key files' form: exactly one `PRIVATE KEY` block (PKCS#8 v1, or v2 with a
/// public key that must match).
fn parse_secret_key(text: &str, role: KeyRole) -> Result<SigningKey> {
    let mut found = None;
    for block in pem_blocks(text, role, true).map_err(at_line)? {
        let on_line = |reason| at_line((Some(block.line), reason));
        if block.label == "PUBLIC KEY" {
            return Err(on_line(KeyError::PublicForSecret(role)));
        }
        if block.label != "PRIVATE KEY" {
            return Err(on_line(KeyError::OtherPem(block.label)));
        }
        if found.is_some() {
            return Err(on_line(KeyError::SeveralSecrets));
        }
        // The decoder's message never shows key bytes.
        let key = SigningKey::from_pkcs8_pem(&block.text).map_err(|e| {
            on_line(KeyError::BadPem {
                label: "PRIVATE KEY",
                detail: e.to_string(),
            })
        })?;
        found = Some(key);
    }
    found.ok_or(CoreError::key(KeyError::Empty))
}

/// Reads a secret key file: refused when group or others may access it
/// ([`crate::fs::check_owner_only`]), once it is known to be a secret key file (a public key
/// file, mode 0644 as it should be, is reported as the wrong file, not as too open).
fn read_secret_file(path: &Path, role: KeyRole) -> Result<SigningKey> {
    let io = |e| CoreError::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(io)?;
    let key = parse_secret_key(&text, role).map_err(|e| e.in_file(path))?;
    crate::fs::check_owner_only(path, &meta).map_err(io)?;
    Ok(key)
}

fn read_public_file(path: &Path, role: KeyRole) -> Result<TrustStore> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    parse_public_keys(&text, role).map_err(|e| e.in_file(path))
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

    /// Adds a trusted key and returns its id. A non-canonical encoding and a weak
    /// (small-order) key ([`decode_public_key`]), and a second key with the same 64-bit id, are
    /// refused.
    pub fn add(&mut self, key: VerifyingKey) -> Result<IssuerId> {
        decode_public_key(key.as_bytes()).map_err(CoreError::key)?;
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

    /// Parses a trust file: one or more SPKI PEM blocks (`-----BEGIN PUBLIC KEY-----`), for
    /// example issuers' `.pub` files put one after the other; blank lines and `#` comment lines
    /// between blocks are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        parse_public_keys(text, KeyRole::Issuer)
    }

    /// Reads a trust file.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_public_file(path, KeyRole::Issuer)
    }
}

/// The SPKI PEM text of a public key, after a comment line naming its role and id.
fn public_text(key: &VerifyingKey, role: KeyRole) -> String {
    let pem = key
        .to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|_| unreachable!("an Ed25519 public key always encodes"));
    format!(
        "# pir-discovery {} public key {}\n{pem}",
        role.name(),
        IssuerId::of(key)
    )
}

/// The PKCS#8 (v1: the seed only, as OpenSSL writes it) PEM text of a secret key, after a
/// comment line naming its role and id.
fn secret_text(key: &SigningKey, role: KeyRole) -> String {
    let pair = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = pair
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap_or_else(|_| unreachable!("an Ed25519 secret key always encodes"));
    format!(
        "# pir-discovery {} secret key {}: keep this file secret (mode 0600)\n{}",
        role.name(),
        IssuerId::of(&key.verifying_key()),
        pem.as_str()
    )
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

    /// A 32-byte secret for another use by the key's holder, derived from the seed with
    /// HKDF-SHA256 under `label` (which names the use, `pir-discovery/...`): the ID prover keys
    /// the MACs of its stored codes with one, so its state store alone reveals no code.
    pub fn derive_secret(&self, label: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &self.signing.to_bytes())
            .expand(label, &mut out)
            .unwrap_or_else(|_| unreachable!("32 bytes is within HKDF-SHA256's output bound"));
        out
    }

    /// The secret key file's text: a comment line, then the PKCS#8 PEM block.
    pub fn to_secret_text(&self) -> String {
        secret_text(&self.signing, KeyRole::Issuer)
    }

    /// The public key file's text (a trust file with this one key): a comment line naming the
    /// key id, then the SPKI PEM block.
    pub fn to_public_text(&self) -> String {
        public_text(&self.verifying_key(), KeyRole::Issuer)
    }

    /// Parses a secret key file's text; a public key file is refused as one.
    pub fn parse_secret(text: &str) -> Result<Self> {
        parse_secret_key(text, KeyRole::Issuer).map(Self::from_signing_key)
    }

    /// Reads a secret key file, refusing it when group or others may access it.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_secret_file(path, KeyRole::Issuer).map(Self::from_signing_key)
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

    /// Parses a secret key file's text; a public key file is refused as one.
    pub fn parse_secret(text: &str) -> Result<Self> {
        parse_secret_key(text, KeyRole::Dp).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// Reads a secret key file, refusing it when group or others may access it.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_secret_file(path, KeyRole::Dp).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// The key id.
    pub fn id(&self) -> IssuerId {
        self.0.id
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The secret key file's text: a comment line, then the PKCS#8 PEM block.
    pub fn to_secret_text(&self) -> String {
        secret_text(&self.0.signing, KeyRole::Dp)
    }

    /// The public key file's text (a DP trust file with this one key).
    pub fn to_public_text(&self) -> String {
        public_text(&self.verifying_key(), KeyRole::Dp)
    }

    /// Signs arbitrary bytes (callers add their own domain separation).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign_raw(message)
    }
}

/// An MSP's signing key: it signs the MSP's requests to an ID prover
/// (`identity::msp_request`), never mappings or snapshots.
///
/// Its files have an issuer key's format; the role keeps them apart in errors.
#[derive(Clone, Debug)]
pub struct MspKey(IssuerKey);

impl MspKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(IssuerKey::generate())
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(IssuerKey::from_seed(seed))
    }

    /// Parses a secret key file's text; a public key file is refused as one.
    pub fn parse_secret(text: &str) -> Result<Self> {
        parse_secret_key(text, KeyRole::Msp).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// Reads a secret key file, refusing it when group or others may access it.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_secret_file(path, KeyRole::Msp).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// The key id.
    pub fn id(&self) -> IssuerId {
        self.0.id
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The secret key file's text: a comment line, then the PKCS#8 PEM block.
    pub fn to_secret_text(&self) -> String {
        secret_text(&self.0.signing, KeyRole::Msp)
    }

    /// The public key file's text, which the ID prover keeps as `<msp domain>.pub`.
    pub fn to_public_text(&self) -> String {
        public_text(&self.verifying_key(), KeyRole::Msp)
    }

    /// Parses an MSP's public key file: exactly one `PUBLIC KEY` block.
    pub fn parse_public(text: &str) -> Result<VerifyingKey> {
        one_key(parse_public_keys(text, KeyRole::Msp)?)
    }

    /// Reads an MSP's public key file (exactly one key).
    pub fn read_public(path: &Path) -> Result<VerifyingKey> {
        read_public_file(path, KeyRole::Msp)
            .and_then(|keys| one_key(keys).map_err(|e| e.in_file(path)))
    }

    /// Signs arbitrary bytes (callers add their own domain separation).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign_raw(message)
    }
}

/// A user's own key: it counter-signs the user's mappings (the consent of
/// `docs/mapping-format.md` section 4.2), nothing else.
#[derive(Clone, Debug)]
pub struct UserKey(IssuerKey);

impl UserKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(IssuerKey::generate())
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(IssuerKey::from_seed(seed))
    }

    /// Parses a secret key file's text; a public key file is refused as one.
    pub fn parse_secret(text: &str) -> Result<Self> {
        parse_secret_key(text, KeyRole::User).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// Reads a secret key file, refusing it when group or others may access it.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_secret_file(path, KeyRole::User).map(|k| Self(IssuerKey::from_signing_key(k)))
    }

    /// The public key's 32 bytes, as a mapping's `user_key` carries them.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The secret key file's text: a comment line, then the PKCS#8 PEM block.
    pub fn to_secret_text(&self) -> String {
        secret_text(&self.0.signing, KeyRole::User)
    }

    /// The public key file's text.
    pub fn to_public_text(&self) -> String {
        public_text(&self.0.verifying_key(), KeyRole::User)
    }

    /// Signs the consent bytes an ID prover handed over. They must be a mapping's user-signed
    /// bytes (they start with `USER_SIG_CONTEXT`), so this key signs nothing else.
    pub fn sign_consent(&self, user_signed_bytes: &[u8]) -> Result<[u8; 64]> {
        if !user_signed_bytes.starts_with(super::mapping::USER_SIG_CONTEXT) {
            return Err(CoreError::BadUserSignature);
        }
        Ok(self.0.sign_raw(user_signed_bytes))
    }

    /// Signs the withdrawal of the user's mapping of `cpi` at `msp`
    /// (`identity::withdrawal_bytes`).
    pub fn sign_withdrawal(&self, cpi: &super::cpi::Cpi, msp: &str, timestamp: u64) -> [u8; 64] {
        self.0
            .sign_raw(&super::msp_request::withdrawal_bytes(cpi, msp, timestamp))
    }
}

fn one_key(keys: TrustStore) -> Result<VerifyingKey> {
    let mut all = keys.keys.into_values();
    match (all.next(), all.next()) {
        (Some(key), None) => Ok(key),
        _ => Err(CoreError::key(KeyError::SeveralPublic)),
    }
}

/// The DP keys a verifier accepts snapshots from, by key id (a trust file of DP public keys).
#[derive(Clone, Debug, Default)]
pub struct DpKeys(TrustStore);

impl DpKeys {
    /// Parses a trust file of DP public keys (the form of [`TrustStore::parse`]).
    pub fn parse(text: &str) -> Result<Self> {
        parse_public_keys(text, KeyRole::Dp).map(Self)
    }

    /// Reads a trust file of DP public keys.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_public_file(path, KeyRole::Dp).map(Self)
    }

    /// The key with that id, if trusted.
    pub fn get(&self, id: &IssuerId) -> Option<&VerifyingKey> {
        self.0.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: CoreError) -> (Option<usize>, KeyError) {
        match e {
            CoreError::MalformedKey { line, reason, .. } => (line, reason),
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn key_files_round_trip() {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let secret = issuer.to_secret_text();
        assert!(secret.contains("-----BEGIN PRIVATE KEY-----\n"), "{secret}");
        let back = IssuerKey::parse_secret(&secret).unwrap();
        assert_eq!(back.id(), issuer.id());
        let public = issuer.to_public_text();
        assert!(public.contains("-----BEGIN PUBLIC KEY-----\n"), "{public}");
        assert!(public.starts_with(&format!(
            "# pir-discovery issuer public key {}\n",
            issuer.id()
        )));
        let trust = TrustStore::parse(&public).unwrap();
        assert!(trust.get(&issuer.id()).is_some());
        assert!(TrustStore::parse("# nothing\n").is_err());
        assert!(TrustStore::parse("not-base64!\n").is_err());
        let dp = DpKey::from_seed(&[4; 32]);
        assert_eq!(
            DpKey::parse_secret(&dp.to_secret_text()).unwrap().id(),
            dp.id()
        );
        assert!(
            DpKeys::parse(&dp.to_public_text())
                .unwrap()
                .get(&dp.id())
                .is_some()
        );
    }

    /// The PKCS#8 form is the standard one: OpenSSL's `genpkey -algorithm ed25519` output for
    /// the RFC 8032 test 1 seed (v1), and the SPKI form of its public key.
    #[test]
    fn the_forms_are_openssls() {
        let seed: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let key = IssuerKey::from_seed(&seed);
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
                   -----END PRIVATE KEY-----\n";
        assert!(
            key.to_secret_text().ends_with(pem),
            "{}",
            key.to_secret_text()
        );
        assert_eq!(IssuerKey::parse_secret(pem).unwrap().id(), key.id());
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
                      -----END PUBLIC KEY-----\n";
        assert!(
            key.to_public_text().ends_with(public),
            "{}",
            key.to_public_text()
        );
    }

    #[test]
    fn a_trust_file_holds_several_keys() {
        let a = IssuerKey::from_seed(&[1; 32]);
        let b = IssuerKey::from_seed(&[2; 32]);
        let both = format!(
            "{}\n# the second issuer\n{}",
            a.to_public_text(),
            b.to_public_text()
        );
        let trust = TrustStore::parse(&both).unwrap();
        assert_eq!(trust.len(), 2);
        assert!(trust.get(&a.id()).is_some() && trust.get(&b.id()).is_some());
    }

    #[test]
    fn public_and_secret_files_are_not_mistaken_for_each_other() {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let (line, r) = reason(IssuerKey::parse_secret(&issuer.to_public_text()).unwrap_err());
        assert_eq!(
            (line, r.clone()),
            (Some(2), KeyError::PublicForSecret(KeyRole::Issuer))
        );
        assert_eq!(
            r.to_string(),
            "this is a public key (SPKI PEM); give the secret key file written by pir-server \
             issuer-keygen"
        );
        let msp = MspKey::from_seed(&[4; 32]);
        let (_, r) = reason(MspKey::parse_secret(&msp.to_public_text()).unwrap_err());
        assert_eq!(r, KeyError::PublicForSecret(KeyRole::Msp));
        assert!(r.to_string().contains("pir-client msp-keygen"), "{r}");
        assert_eq!(
            MspKey::parse_public(&msp.to_public_text()).unwrap(),
            msp.verifying_key()
        );
        let two = format!("{}{}", msp.to_public_text(), issuer.to_public_text());
        let (_, r) = reason(MspKey::parse_public(&two).unwrap_err());
        assert_eq!(r, KeyError::SeveralPublic);
        let (_, r) = reason(DpKey::parse_secret(&issuer.to_public_text()).unwrap_err());
        assert_eq!(r, KeyError::PublicForSecret(KeyRole::Dp));
        let (_, r) = reason(TrustStore::parse(&issuer.to_secret_text()).unwrap_err());
        assert_eq!(r, KeyError::SecretForPublic(KeyRole::Issuer));
        let (_, r) = reason(DpKeys::parse(&issuer.to_secret_text()).unwrap_err());
        assert_eq!(r, KeyError::SecretForPublic(KeyRole::Dp));
        // A public key appended to a trust file of good keys still cannot carry a secret.
        let mixed = format!("{}{}", issuer.to_public_text(), issuer.to_secret_text());
        let (_, r) = reason(TrustStore::parse(&mixed).unwrap_err());
        assert_eq!(r, KeyError::SecretForPublic(KeyRole::Issuer));
    }

    #[test]
    fn old_one_line_files_are_refused_with_the_way_out() {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let old_secret = format!("{}\n", super::super::b64::encode(&[3; 32]));
        let old_public = format!(
            "# pir-discovery issuer key {}\n{}\n",
            issuer.id(),
            super::super::b64::encode(issuer.verifying_key().as_bytes())
        );
        let (line, r) = reason(IssuerKey::parse_secret(&old_secret).unwrap_err());
        assert_eq!(
            (line, r.clone()),
            (Some(1), KeyError::OneLine(KeyRole::Issuer))
        );
        assert!(
            r.to_string()
                .contains("pir-server issuer-keygen --out FILE"),
            "{r}"
        );
        let (line, r) = reason(TrustStore::parse(&old_public).unwrap_err());
        assert_eq!((line, r), (Some(2), KeyError::OneLine(KeyRole::Issuer)));
        let (_, r) = reason(DpKeys::parse(&old_public).unwrap_err());
        assert_eq!(r, KeyError::OneLine(KeyRole::Dp));
    }

    #[test]
    fn broken_pem_is_refused_with_its_line() {
        let public = IssuerKey::from_seed(&[3; 32]).to_public_text();
        let unterminated = public.replace("-----END PUBLIC KEY-----\n", "");
        assert_eq!(
            reason(TrustStore::parse(&unterminated).unwrap_err()),
            (Some(2), KeyError::Unterminated)
        );
        let damaged = public.replace("MCow", "MCox");
        assert!(matches!(
            reason(TrustStore::parse(&damaged).unwrap_err()),
            (Some(2), KeyError::BadPem { .. })
        ));
        let certificate = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            reason(TrustStore::parse(certificate).unwrap_err()),
            (Some(1), KeyError::OtherPem("CERTIFICATE".into()))
        );
        assert_eq!(
            reason(IssuerKey::parse_secret("hello\n").unwrap_err()),
            (Some(1), KeyError::NotPem { secret: true })
        );
        assert_eq!(
            reason(IssuerKey::parse_secret("# only a comment\n").unwrap_err()),
            (None, KeyError::Empty)
        );
        let two = format!(
            "{}{}",
            IssuerKey::from_seed(&[1; 32]).to_secret_text(),
            IssuerKey::from_seed(&[2; 32]).to_secret_text()
        );
        assert!(matches!(
            reason(IssuerKey::parse_secret(&two).unwrap_err()),
            (Some(_), KeyError::SeveralSecrets)
        ));
    }

    /// An SPKI PEM block around raw public key bytes, as an attacker could write one.
    fn spki_pem(bytes: &[u8; 32]) -> String {
        use base64::Engine;
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(bytes);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    /// p = 2^255 - 19 plus `k`, little-endian (k < 19 keeps the top bit clear).
    fn p_plus(k: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = 0xed + k;
        b[31] = 0x7f;
        b
    }

    #[test]
    fn non_canonical_and_small_order_keys_are_refused() {
        // The key of the report: y = p + 3, which ed25519-dalek alone reduces to 3.
        let report: [u8; 32] =
            super::super::b64::decode_array("8P_______________________________________38").unwrap();
        assert_eq!(report, p_plus(3));
        assert!(
            VerifyingKey::from_bytes(&report).is_ok(),
            "dalek alone accepts it"
        );
        assert_eq!(
            decode_public_key(&report).unwrap_err(),
            KeyError::NonCanonical
        );
        // y = p (that is, 0) and y = p + 1 (that is, 1, the identity: also small-order).
        for k in [0, 1, 3] {
            let err = decode_public_key(&p_plus(k)).unwrap_err();
            assert!(
                matches!(err, KeyError::NonCanonical | KeyError::NotEd25519),
                "{k}: {err}"
            );
            let (line, _) = reason(TrustStore::parse(&spki_pem(&p_plus(k))).unwrap_err());
            assert_eq!(line, Some(1));
            assert!(DpKeys::parse(&spki_pem(&p_plus(k))).is_err());
            if let Ok(key) = VerifyingKey::from_bytes(&p_plus(k)) {
                assert!(TrustStore::new().add(key).is_err(), "{k}");
            }
        }
        // x = 0 with its sign bit set: y = 1 encoded with the top bit.
        let mut negative_zero = [0u8; 32];
        negative_zero[0] = 1;
        negative_zero[31] = 0x80;
        assert!(decode_public_key(&negative_zero).is_err());
        // Small-order points: the identity (y = 1) and the point of order 2 (y = -1 = p - 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut minus_one = p_plus(0);
        minus_one[0] = 0xec;
        for weak in [identity, minus_one] {
            assert_eq!(decode_public_key(&weak).unwrap_err(), KeyError::Weak);
            assert_eq!(
                reason(TrustStore::parse(&spki_pem(&weak)).unwrap_err()),
                (Some(1), KeyError::Weak)
            );
        }
        // A good key in the same wrapping is accepted, so the wrapping is not what fails.
        let good = *IssuerKey::from_seed(&[3; 32]).verifying_key().as_bytes();
        assert!(decode_public_key(&good).is_ok());
        assert_eq!(TrustStore::parse(&spki_pem(&good)).unwrap().len(), 1);
    }
}
