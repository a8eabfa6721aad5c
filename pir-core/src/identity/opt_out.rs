//! Opt-out records: an issuer's signed statement that a CPI is not discoverable (MIMI R5).
//!
//! A client that finds a valid opt-out for a CPI reports it as opted out, which a sender can
//! tell apart from "no mapping". The signed bytes (specified in `docs/mapping-format.md` §4.4)
//! are domain-separated from a mapping's, so neither signature can stand for the other.

use ed25519_dalek::Signature;

use super::{
    cpi::Cpi,
    keys::{IssuerId, IssuerKey, TrustStore},
};
use crate::error::{CoreError, FieldError, Result};

/// The version byte that opens an opt-out's canonical body.
pub const OPT_OUT_FORMAT_VERSION: u8 = 1;
/// The context an issuer's signature over an opt-out covers, before the canonical body.
pub const OPT_OUT_SIG_CONTEXT: &[u8] = b"pir-discovery/opt-out/v1/issuer\0";

/// "This CPI is not discoverable", signed by the issuer that verified the CPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptOut {
    /// The CPI that opted out (normalised).
    pub cpi: Cpi,
    /// Unix seconds from which the statement holds.
    pub not_before: u64,
    /// Unix seconds until which the statement holds (inclusive).
    pub not_after: u64,
    /// The issuer that signed it.
    pub issuer: IssuerId,
    /// The issuer's Ed25519 signature over [`OPT_OUT_SIG_CONTEXT`] and the canonical body.
    pub issuer_sig: [u8; 64],
}

impl OptOut {
    /// Signs an opt-out for `cpi` valid from `not_before` to `not_after`.
    pub fn sign(cpi: Cpi, not_before: u64, not_after: u64, issuer: &IssuerKey) -> Result<Self> {
        check_window_order(not_before, not_after)?;
        let body = canonical_body(&cpi, not_before, not_after, &issuer.id);
        Ok(Self {
            issuer_sig: issuer.sign_raw(&[OPT_OUT_SIG_CONTEXT, &body].concat()),
            cpi,
            not_before,
            not_after,
            issuer: issuer.id,
        })
    }

    /// The canonical body the issuer signs.
    pub fn canonical_body(&self) -> Vec<u8> {
        canonical_body(&self.cpi, self.not_before, self.not_after, &self.issuer)
    }

    /// Checks the issuer's signature against `trust` (not the validity window).
    pub fn verify_signature(&self, trust: &TrustStore) -> Result<()> {
        check_window_order(self.not_before, self.not_after)?;
        let key = trust
            .get(&self.issuer)
            .ok_or(CoreError::UnknownIssuer(self.issuer))?;
        key.verify_strict(
            &[OPT_OUT_SIG_CONTEXT, &self.canonical_body()].concat(),
            &Signature::from_bytes(&self.issuer_sig),
        )
        .map_err(|_| CoreError::BadIssuerSignature)
    }

    /// Whether `now` lies in the validity window.
    pub fn in_window(&self, now: u64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }
}

fn check_window_order(not_before: u64, not_after: u64) -> Result<()> {
    if not_before > not_after {
        return Err(CoreError::field("not_before", FieldError::WindowReversed));
    }
    Ok(())
}

/// `u8(version) || u16le(len) || cpi || u64le(not_before) || u64le(not_after) || issuer_id[8]`.
fn canonical_body(cpi: &Cpi, not_before: u64, not_after: u64, issuer: &IssuerId) -> Vec<u8> {
    let cpi = cpi.as_str().as_bytes();
    let mut out = Vec::with_capacity(3 + cpi.len() + 24);
    out.push(OPT_OUT_FORMAT_VERSION);
    // A CPI is at most MAX_CPI_LEN (261) bytes.
    out.extend_from_slice(&(cpi.len() as u16).to_le_bytes());
    out.extend_from_slice(cpi);
    out.extend_from_slice(&not_before.to_le_bytes());
    out.extend_from_slice(&not_after.to_le_bytes());
    out.extend_from_slice(&issuer.0);
    out
}

/// An opt-out whose signature was checked against a trust store; only
/// [`VerifiedOptOut::new`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOptOut(OptOut);

impl VerifiedOptOut {
    /// Verifies the opt-out's signature.
    pub fn new(opt_out: OptOut, trust: &TrustStore) -> Result<Self> {
        opt_out.verify_signature(trust)?;
        Ok(Self(opt_out))
    }

    /// The opt-out.
    pub fn opt_out(&self) -> &OptOut {
        &self.0
    }

    /// The opt-out, by value.
    pub fn into_inner(self) -> OptOut {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_opt_out_verifies_only_as_signed_and_only_as_an_opt_out() {
        let issuer = IssuerKey::from_seed(&[7; 32]);
        let mut trust = TrustStore::new();
        trust.add(issuer.verifying_key()).unwrap();
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let o = OptOut::sign(cpi.clone(), 10, 20, &issuer).unwrap();
        VerifiedOptOut::new(o.clone(), &trust).unwrap();
        assert!(o.in_window(10) && o.in_window(20) && !o.in_window(21));

        let mut other = o.clone();
        other.cpi = Cpi::parse("tel:+14155550101").unwrap();
        assert!(matches!(
            other.verify_signature(&trust),
            Err(CoreError::BadIssuerSignature)
        ));
        let mut longer = o.clone();
        longer.not_after += 1;
        assert!(matches!(
            longer.verify_signature(&trust),
            Err(CoreError::BadIssuerSignature)
        ));
        assert!(matches!(
            o.verify_signature(&TrustStore::new()),
            Err(CoreError::UnknownIssuer(_))
        ));
        assert!(OptOut::sign(cpi, 20, 10, &issuer).is_err());
    }
}
