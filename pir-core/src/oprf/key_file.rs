//! The DP's OPRF secret key file: one PEM block (RFC 7468) holding the 32-byte secret scalar,
//! after a comment that names the suite and the public key. Written 0600 by `oprf-keygen`;
//! read only when group and others have no access to it.
//!
//! ```text
//! # pir-discovery OPRF secret key (RFC 9497 VOPRF, ristretto255-SHA512), public key <hex>
//! -----BEGIN PIR DISCOVERY OPRF SECRET KEY-----
//! <base64 of the scalar, little-endian>
//! -----END PIR DISCOVERY OPRF SECRET KEY-----
//! ```

use std::path::Path;

use super::{OprfKey, SUITE_NAME};
use crate::error::{CoreError, KeyError, Result};

/// The PEM label of the OPRF secret key.
pub const SECRET_KEY_LABEL: &str = "PIR DISCOVERY OPRF SECRET KEY";

impl OprfKey {
    /// The secret key file's text. Secret: write it only to an owner-only file.
    #[allow(
        clippy::expect_used,
        reason = "a 32-byte PEM body always encodes under a valid label"
    )]
    pub fn to_secret_text(&self) -> String {
        let pem = pem_rfc7468::encode_string(
            SECRET_KEY_LABEL,
            pem_rfc7468::LineEnding::LF,
            &self.to_bytes(),
        )
        .expect("a 32-byte PEM body encodes");
        format!(
            "# pir-discovery OPRF secret key (RFC 9497 VOPRF, {SUITE_NAME}), public key {}: keep \
             this file secret (mode 0600)\n{pem}",
            self.public()
        )
    }

    /// Parses a secret key file's text.
    pub fn parse_secret(text: &str) -> Result<Self> {
        let body: String = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| format!("{}\n", l.trim()))
            .collect();
        if body.is_empty() {
            return Err(CoreError::key(KeyError::Empty));
        }
        let (label, bytes) = pem_rfc7468::decode_vec(body.as_bytes())
            .map_err(|_| CoreError::key(KeyError::NotOprfSecret("not one PEM block")))?;
        if label != SECRET_KEY_LABEL {
            return Err(CoreError::key(KeyError::NotOprfSecret(
                "a PEM block with another label",
            )));
        }
        Self::from_bytes(&bytes)
            .map_err(|_| CoreError::key(KeyError::NotOprfSecret("not a valid secret scalar")))
    }

    /// Reads a secret key file: refused when group or others may access it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let io = |e| CoreError::io(path, e);
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let text = std::io::read_to_string(file).map_err(io)?;
        let key = Self::parse_secret(&text).map_err(|e| e.in_file(path))?;
        crate::fs::check_owner_only(path, &meta).map_err(io)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_secret_file_round_trips_and_other_files_are_refused() {
        let key = OprfKey::derive(&[1; 32], b"test").unwrap();
        let text = key.to_secret_text();
        assert!(text.contains(&key.public().to_string()), "{text}");
        assert_eq!(
            OprfKey::parse_secret(&text).unwrap().to_bytes(),
            key.to_bytes()
        );
        let other = text.replace(SECRET_KEY_LABEL, "PRIVATE KEY");
        for bad in [other.as_str(), "", "# only a comment\n", "garbage\n"] {
            let err = OprfKey::parse_secret(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    CoreError::MalformedKey {
                        reason: KeyError::NotOprfSecret(_) | KeyError::Empty,
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }
}
