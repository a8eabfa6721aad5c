//! Authenticated mappings: one CPI reachable at one MSP, signed by the ID prover (issuer) that
//! verified the CPI, optionally counter-signed by the user's own key as consent.
//!
//! The signed bytes are specified in `docs/mapping-format.md`; this module is the reference
//! implementation of that document and `test_vectors/mapping_signatures.json` pins it.

use ed25519_dalek::{Signature, Signer, SigningKey};

use super::{
    cpi::{Cpi, normalise_domain},
    keys::{IssuerId, IssuerKey, TrustStore},
};
use crate::error::{CoreError, FieldError, Result};

/// Version byte that starts the canonical body.
pub const MAPPING_FORMAT_VERSION: u8 = 1;
/// Domain-separation prefix of the issuer's signature.
pub const ISSUER_SIG_CONTEXT: &[u8] = b"pir-discovery/mapping/v1/issuer\0";
/// Domain-separation prefix of the user's self-signature.
pub const USER_SIG_CONTEXT: &[u8] = b"pir-discovery/mapping/v1/user\0";

/// Longest PSI, in bytes.
pub const MAX_PSI_LEN: usize = 255;
/// Longest context label, in bytes.
pub const MAX_CONTEXT_LEN: usize = 32;

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
            msp: normalise_domain(msp)
                .map_err(|r| CoreError::field("msp", FieldError::Domain(r)))?,
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
            return Err(CoreError::field("msp", FieldError::NotNormalised));
        }
        check_text("psi", self.psi.as_deref(), MAX_PSI_LEN)?;
        check_text("context", self.context.as_deref(), MAX_CONTEXT_LEN)?;
        if self.not_before > self.not_after {
            return Err(CoreError::field("not_before", FieldError::WindowReversed));
        }
        Ok(())
    }

    /// Signs the fields with the issuer's key and, if given, the user's key.
    pub fn sign(self, issuer: &IssuerKey, user: Option<&SigningKey>) -> Result<Mapping> {
        self.validate()?;
        let user_key = user.map(|k| k.verifying_key().to_bytes());
        let body = canonical_body(&self, &issuer.id, user_key.as_ref());
        let issuer_sig = issuer.sign_raw(&[ISSUER_SIG_CONTEXT, &body].concat());
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

impl MappingFields {
    /// The bytes a user signs to consent to this mapping from `issuer` under `user_key`
    /// (`USER_SIG_CONTEXT || body`): what an ID prover hands the user's MSP before the mapping
    /// exists.
    pub fn user_signed_bytes(&self, issuer: &IssuerId, user_key: &[u8; 32]) -> Vec<u8> {
        [
            USER_SIG_CONTEXT,
            &canonical_body(self, issuer, Some(user_key)),
        ]
        .concat()
    }

    /// Signs the fields with the issuer's key, carrying a consent the user signed elsewhere:
    /// the user's signature over [`MappingFields::user_signed_bytes`] is verified first (strict
    /// Ed25519; a non-canonical or weak key is refused), so an issued mapping never carries a
    /// consent that does not verify.
    pub fn sign_with_consent(self, issuer: &IssuerKey, consent: UserConsent) -> Result<Mapping> {
        self.validate()?;
        let user_key = super::keys::decode_public_key(&consent.key)
            .map_err(|_| CoreError::BadUserSignature)?;
        let body = canonical_body(&self, &issuer.id, Some(&consent.key));
        user_key
            .verify_strict(
                &[USER_SIG_CONTEXT, &body].concat(),
                &Signature::from_bytes(&consent.sig),
            )
            .map_err(|_| CoreError::BadUserSignature)?;
        let issuer_sig = issuer.sign_raw(&[ISSUER_SIG_CONTEXT, &body].concat());
        Ok(Mapping {
            fields: self,
            issuer: issuer.id,
            issuer_sig,
            user: Some(consent),
        })
    }
}

fn check_text(field: &'static str, value: Option<&str>, max: usize) -> Result<()> {
    match value {
        None => Ok(()),
        Some(v) if v.is_empty() || v.len() > max => {
            Err(CoreError::field(field, FieldError::Length { max }))
        }
        Some(v) if v.chars().any(|c| c.is_control() || is_invisible_format(c)) => {
            Err(CoreError::field(field, FieldError::Invisible))
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
            .ok_or(CoreError::UnknownIssuer(self.issuer))?;
        let body = self.canonical_body();
        key.verify_strict(
            &[ISSUER_SIG_CONTEXT, &body].concat(),
            &Signature::from_bytes(&self.issuer_sig),
        )
        .map_err(|_| CoreError::BadIssuerSignature)?;
        if let Some(user) = &self.user {
            // A non-canonical or small-order user key is refused as not verifying.
            let user_key = super::keys::decode_public_key(&user.key)
                .map_err(|_| CoreError::BadUserSignature)?;
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
    fn a_consent_signed_elsewhere_is_the_same_mapping_and_is_checked_first() {
        let issuer = IssuerKey::from_seed(&[7; 32]);
        let user = SigningKey::from_bytes(&[9; 32]);
        let key = user.verifying_key().to_bytes();
        let bytes = fields().user_signed_bytes(&issuer.id(), &key);
        let consent = UserConsent {
            key,
            sig: user.sign(&bytes).to_bytes(),
        };
        let issued = fields()
            .sign_with_consent(&issuer, consent.clone())
            .unwrap();
        assert_eq!(issued, fields().sign(&issuer, Some(&user)).unwrap());

        let mut other = fields();
        other.context = None;
        assert!(matches!(
            other.sign_with_consent(&issuer, consent.clone()),
            Err(CoreError::BadUserSignature)
        ));
        let forged = UserConsent {
            key: SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes(),
            sig: consent.sig,
        };
        assert!(matches!(
            fields().sign_with_consent(&issuer, forged),
            Err(CoreError::BadUserSignature)
        ));
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
}
