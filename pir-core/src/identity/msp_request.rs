//! An MSP's signed requests to an ID prover (`docs/mapping-format.md`, section 13).
//!
//! An MSP may enroll, complete and revoke only mappings that name itself. It proves which MSP
//! it is by signing each request with its Ed25519 key ([`MspKey`]); the prover holds each
//! registered MSP's public key under its domain. The signed bytes are the request's fields in a
//! fixed encoding, so any gRPC stack computes the same bytes:
//!
//! ```text
//! MSP_REQUEST_CONTEXT = "pir-discovery/issuer/v1/msp-request\0"
//! signed = MSP_REQUEST_CONTEXT || u8(kind) || str16(msp) || u64le(timestamp) || fields(kind)
//!   kind 1, start:    str16(cpi) || opt(str16(psi)) || opt(str16(context)) || opt(user_key[32])
//!   kind 2, complete: enrollment_id[16] || str16(code) || opt(user_sig[64])
//!   kind 3, revoke:   str16(cpi)
//! ```
//!
//! `str16` and `opt` are section 4.1's (u16le length; `0x00`, or `0x01` then the value). The
//! timestamp (unix seconds) bounds a replay to the prover's allowed clock skew.

use ed25519_dalek::{Signature, VerifyingKey};

use super::{cpi::Cpi, keys::MspKey};
use crate::error::{CoreError, Result};

/// Domain separation of an MSP's request signature.
pub const MSP_REQUEST_CONTEXT: &[u8] = b"pir-discovery/issuer/v1/msp-request\0";

/// Domain separation of a user's withdrawal of their own mapping.
pub const USER_WITHDRAWAL_CONTEXT: &[u8] = b"pir-discovery/issuer/v1/user-withdrawal\0";

/// The bytes a user signs, with the key their mapping carries, to withdraw it from the prover
/// without their MSP: `USER_WITHDRAWAL_CONTEXT || str16(cpi) || str16(msp) || u64le(timestamp)`.
pub fn withdrawal_bytes(cpi: &Cpi, msp: &str, timestamp: u64) -> Vec<u8> {
    let mut out = USER_WITHDRAWAL_CONTEXT.to_vec();
    put_str(&mut out, cpi.as_str());
    put_str(&mut out, msp);
    out.extend_from_slice(&timestamp.to_le_bytes());
    out
}

/// Verifies a user's withdrawal signature under the user key a mapping carries (strict
/// Ed25519; a non-canonical or weak key is refused).
pub fn verify_withdrawal(
    user_key: &[u8; 32],
    cpi: &Cpi,
    msp: &str,
    timestamp: u64,
    signature: &[u8; 64],
) -> Result<()> {
    let key = super::keys::decode_public_key(user_key).map_err(|_| CoreError::BadUserSignature)?;
    key.verify_strict(
        &withdrawal_bytes(cpi, msp, timestamp),
        &Signature::from_bytes(signature),
    )
    .map_err(|_| CoreError::BadUserSignature)
}

/// Length of an enrollment id.
pub const ENROLLMENT_ID_LEN: usize = 16;

/// A request an MSP signs, with the fields the signature covers.
#[derive(Clone, Copy, Debug)]
pub enum MspRequest<'a> {
    /// Start proving that a user holds `cpi`, to map it to the signing MSP.
    Start {
        /// The CPI, normalised.
        cpi: &'a Cpi,
        /// The user's identifier at the MSP, if any.
        psi: Option<&'a str>,
        /// The context label, if any.
        context: Option<&'a str>,
        /// The user's public key, when the user will counter-sign.
        user_key: Option<&'a [u8; 32]>,
    },
    /// Complete an enrollment with the code the user received.
    Complete {
        /// The enrollment id the start returned.
        enrollment: &'a [u8; ENROLLMENT_ID_LEN],
        /// The code as the user gave it.
        code: &'a str,
        /// The user's signature over the mapping, when a user key was given.
        user_sig: Option<&'a [u8; 64]>,
    },
    /// Withdraw the signing MSP's mapping of `cpi`.
    Revoke {
        /// The CPI, normalised.
        cpi: &'a Cpi,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every string here is bounded well below 64 KiB by the caller's checks; a longer one is
    // cut at the length's width, which then fails to verify rather than wrapping.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
    }
}

impl MspRequest<'_> {
    /// The exact bytes the MSP signs.
    pub fn signed_bytes(&self, msp: &str, timestamp: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(MSP_REQUEST_CONTEXT);
        out.push(match self {
            Self::Start { .. } => 1,
            Self::Complete { .. } => 2,
            Self::Revoke { .. } => 3,
        });
        put_str(&mut out, msp);
        out.extend_from_slice(&timestamp.to_le_bytes());
        match self {
            Self::Start {
                cpi,
                psi,
                context,
                user_key,
            } => {
                put_str(&mut out, cpi.as_str());
                for text in [psi, context] {
                    match text {
                        None => out.push(0),
                        Some(t) => {
                            out.push(1);
                            put_str(&mut out, t);
                        }
                    }
                }
                put_opt(&mut out, user_key.map(|k| &k[..]));
            }
            Self::Complete {
                enrollment,
                code,
                user_sig,
            } => {
                out.extend_from_slice(&enrollment[..]);
                put_str(&mut out, code);
                put_opt(&mut out, user_sig.map(|s| &s[..]));
            }
            Self::Revoke { cpi } => put_str(&mut out, cpi.as_str()),
        }
        out
    }

    /// Signs the request as `msp` at `timestamp`.
    pub fn sign(&self, key: &MspKey, msp: &str, timestamp: u64) -> [u8; 64] {
        key.sign_raw(&self.signed_bytes(msp, timestamp))
    }

    /// Verifies `msp`'s signature (strict Ed25519, as for mappings) under its registered key.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        msp: &str,
        timestamp: u64,
        signature: &[u8; 64],
    ) -> Result<()> {
        key.verify_strict(
            &self.signed_bytes(msp, timestamp),
            &Signature::from_bytes(signature),
        )
        .map_err(|_| CoreError::BadMspSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_field_and_the_kind() {
        let key = MspKey::from_seed(&[7; 32]);
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let other = Cpi::parse("tel:+14155550101").unwrap();
        let start = MspRequest::Start {
            cpi: &cpi,
            psi: Some("@a"),
            context: None,
            user_key: None,
        };
        let sig = start.sign(&key, "chat.example", 100);
        let vk = key.verifying_key();
        start.verify(&vk, "chat.example", 100, &sig).unwrap();
        assert!(start.verify(&vk, "other.example", 100, &sig).is_err());
        assert!(start.verify(&vk, "chat.example", 101, &sig).is_err());
        let changed = [
            MspRequest::Start {
                cpi: &other,
                psi: Some("@a"),
                context: None,
                user_key: None,
            },
            MspRequest::Start {
                cpi: &cpi,
                psi: None,
                context: Some("@a"),
                user_key: None,
            },
            MspRequest::Start {
                cpi: &cpi,
                psi: Some("@a"),
                context: None,
                user_key: Some(&[1; 32]),
            },
            MspRequest::Revoke { cpi: &cpi },
        ];
        for request in changed {
            assert!(matches!(
                request.verify(&vk, "chat.example", 100, &sig),
                Err(CoreError::BadMspSignature)
            ));
        }
        let id = [3; ENROLLMENT_ID_LEN];
        let complete = MspRequest::Complete {
            enrollment: &id,
            code: "123456",
            user_sig: None,
        };
        let sig = complete.sign(&key, "chat.example", 5);
        complete.verify(&vk, "chat.example", 5, &sig).unwrap();
        let wrong_code = MspRequest::Complete {
            enrollment: &id,
            code: "123457",
            user_sig: None,
        };
        assert!(wrong_code.verify(&vk, "chat.example", 5, &sig).is_err());
    }

    #[test]
    fn a_withdrawal_verifies_only_for_its_mapping_and_time() {
        let user = crate::identity::UserKey::from_seed(&[5; 32]);
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let sig = user.sign_withdrawal(&cpi, "chat.example", 9);
        let key = user.public_bytes();
        verify_withdrawal(&key, &cpi, "chat.example", 9, &sig).unwrap();
        assert!(verify_withdrawal(&key, &cpi, "other.example", 9, &sig).is_err());
        assert!(verify_withdrawal(&key, &cpi, "chat.example", 10, &sig).is_err());
        let other = crate::identity::UserKey::from_seed(&[6; 32]).public_bytes();
        assert!(verify_withdrawal(&other, &cpi, "chat.example", 9, &sig).is_err());
    }

    #[test]
    fn the_signed_bytes_are_the_documented_encoding() {
        let cpi = Cpi::parse("mailto:a@b.example").unwrap();
        let bytes = MspRequest::Revoke { cpi: &cpi }.signed_bytes("m.example", 1);
        let mut expected = MSP_REQUEST_CONTEXT.to_vec();
        expected.push(3);
        expected.extend_from_slice(&9u16.to_le_bytes());
        expected.extend_from_slice(b"m.example");
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&18u16.to_le_bytes());
        expected.extend_from_slice(b"mailto:a@b.example");
        assert_eq!(bytes, expected);
    }
}
