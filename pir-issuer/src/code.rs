//! One-time codes: random, kept only as a MAC under a key derived from the issuer's key (so
//! the state store alone reveals no code), compared in constant time.

use hmac::{Hmac, Mac};
use pir_core::{IssuerKey, identity::ENROLLMENT_ID_LEN};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

const CODE_MAC_LABEL: &[u8] = b"pir-discovery/issuer/v1/code-mac";

/// The key the codes' MACs are made with.
#[derive(Clone)]
pub(crate) struct CodeKey([u8; 32]);

impl CodeKey {
    pub(crate) fn of(issuer: &IssuerKey) -> Self {
        Self(issuer.derive_secret(CODE_MAC_LABEL))
    }

    /// A fresh code of `digits` decimal digits, uniformly random (leading zeros kept).
    pub(crate) fn generate(digits: u32) -> String {
        let bound = 10u64.pow(digits);
        let n = rand::rngs::OsRng.gen_range(0..bound);
        format!("{n:0width$}", width = digits as usize)
    }

    /// The MAC stored for `code` of enrollment `id`.
    pub(crate) fn mac(&self, id: &[u8; ENROLLMENT_ID_LEN], code: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(id);
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `given` (as the user typed it: spaces and dashes are ignored) is the code whose
    /// MAC is `stored`. The comparison takes the same time wherever they differ.
    pub(crate) fn matches(
        &self,
        id: &[u8; ENROLLMENT_ID_LEN],
        given: &str,
        stored: &[u8; 32],
    ) -> bool {
        let cleaned: String = given.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if cleaned.len() > 32 {
            return false;
        }
        self.mac(id, &cleaned).ct_eq(stored).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_digits_and_match_only_themselves() {
        let key = CodeKey::of(&IssuerKey::from_seed(&[1; 32]));
        let id = [9; ENROLLMENT_ID_LEN];
        for _ in 0..100 {
            let code = CodeKey::generate(6);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        let stored = key.mac(&id, "012345");
        assert!(key.matches(&id, "012345", &stored));
        assert!(key.matches(&id, "012 345", &stored));
        assert!(key.matches(&id, "012-345", &stored));
        assert!(!key.matches(&id, "012346", &stored));
        assert!(!key.matches(&[8; ENROLLMENT_ID_LEN], "012345", &stored));
        let other = CodeKey::of(&IssuerKey::from_seed(&[2; 32]));
        assert!(!other.matches(&id, "012345", &stored));
    }
}
