//! A registration's lifetime, both ways: the expiry `RegisterKeys` and `RenewKeys` answer with,
//! and `RenewKeys` itself (the key id and the proof of possession a server checks).
//!
//! ```text
//! client                                              server
//! RenewKeysRequest::authenticated(keys) ─────────▶ RenewKeysIn::try_from(req)
//! Expiry::of_registration / of_renewal ◀── expiry ◀── RegisterKeysResponse::registered,
//!                                                     RenewKeysResponse::until
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pir_core::{ClientKeys, KeyId, query_auth::QUERY_MAC_BYTES};

use crate::v1;

/// Why a `RenewKeysRequest` is refused by its shape.
///
/// Not `#[non_exhaustive]`: the server maps every variant to a status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenewKeysError {
    /// A key id that is not a SHA-256 digest.
    #[error("key id must be 32 bytes, got {got}")]
    KeyIdLength {
        /// Its length in bytes.
        got: usize,
    },
    /// A MAC of another length than HMAC-SHA256's.
    #[error("mac must be 32 bytes, got {got}")]
    MacLength {
        /// Its length in bytes.
        got: usize,
    },
}

/// A `RenewKeysRequest` from the wire: a key id and a MAC of the right lengths. Whether the MAC
/// is the key's owner's is for the server, which holds the mac key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewKeysIn {
    key_id: KeyId,
    mac: [u8; QUERY_MAC_BYTES],
}

impl TryFrom<v1::RenewKeysRequest> for RenewKeysIn {
    type Error = RenewKeysError;

    fn try_from(req: v1::RenewKeysRequest) -> Result<Self, Self::Error> {
        let key_id = <[u8; 32]>::try_from(req.key_id.as_slice())
            .map(KeyId)
            .map_err(|_| RenewKeysError::KeyIdLength {
                got: req.key_id.len(),
            })?;
        let mac = <[u8; QUERY_MAC_BYTES]>::try_from(req.mac.as_slice())
            .map_err(|_| RenewKeysError::MacLength { got: req.mac.len() })?;
        Ok(Self { key_id, mac })
    }
}

impl RenewKeysIn {
    /// The keys to renew.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The MAC the renewal carries (`QueryMacKey::verify_renewal`).
    pub fn mac(&self) -> &[u8; QUERY_MAC_BYTES] {
        &self.mac
    }
}

impl v1::RenewKeysRequest {
    /// The renewal of `keys`'s registration, authenticated by their owner.
    pub fn authenticated(keys: &ClientKeys) -> Self {
        let id = keys.id();
        Self {
            key_id: id.0.to_vec(),
            mac: keys.query_mac_key().tag_renewal(&id).to_vec(),
        }
    }
}

/// Unix seconds of `t`, rounded down (0 for a time before 1970, which no expiry is).
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl v1::RegisterKeysResponse {
    /// Keys `id` are registered until `expires_at`.
    pub fn registered(id: KeyId, expires_at: SystemTime) -> Self {
        Self {
            key_id: id.0.to_vec(),
            expires_at: unix_seconds(expires_at),
        }
    }
}

impl v1::RenewKeysResponse {
    /// The registration now lasts until `expires_at`.
    pub fn until(expires_at: SystemTime) -> Self {
        Self {
            expires_at: unix_seconds(expires_at),
        }
    }
}

/// When a registration expires, as a server said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry(SystemTime);

impl Expiry {
    fn of(unix: u64) -> Option<Self> {
        // 0: a server from before registrations expired says nothing.
        (unix != 0).then(|| Self(UNIX_EPOCH + Duration::from_secs(unix)))
    }

    /// The expiry a registration was answered with, if the server states one.
    pub fn of_registration(response: &v1::RegisterKeysResponse) -> Option<Self> {
        Self::of(response.expires_at)
    }

    /// The expiry a renewal was answered with, if the server states one.
    pub fn of_renewal(response: &v1::RenewKeysResponse) -> Option<Self> {
        Self::of(response.expires_at)
    }

    /// The time it names.
    pub fn at(&self) -> SystemTime {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use pir_core::SchemeParams;

    use super::*;

    #[test]
    fn a_renewal_carries_its_owners_mac_and_is_refused_by_its_lengths() {
        let keys = ClientKeys::generate(&SchemeParams::danger_test_only_small()).unwrap();
        let req = v1::RenewKeysRequest::authenticated(&keys);
        let parsed = RenewKeysIn::try_from(req.clone()).unwrap();
        assert_eq!(parsed.key_id(), keys.id());
        assert!(
            keys.query_mac_key()
                .verify_renewal(&parsed.key_id(), parsed.mac())
        );
        let short_id = v1::RenewKeysRequest {
            key_id: vec![1; 31],
            ..req.clone()
        };
        assert_eq!(
            RenewKeysIn::try_from(short_id),
            Err(RenewKeysError::KeyIdLength { got: 31 })
        );
        let no_mac = v1::RenewKeysRequest {
            mac: Vec::new(),
            ..req
        };
        assert_eq!(
            RenewKeysIn::try_from(no_mac),
            Err(RenewKeysError::MacLength { got: 0 })
        );
    }

    #[test]
    fn an_expiry_travels_in_unix_seconds_and_zero_says_none() {
        let at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let response = v1::RegisterKeysResponse::registered(KeyId([3; 32]), at);
        assert_eq!(response.key_id, vec![3; 32]);
        assert_eq!(Expiry::of_registration(&response).unwrap().at(), at);
        let renewed = v1::RenewKeysResponse::until(at + Duration::from_millis(1500));
        assert_eq!(
            Expiry::of_renewal(&renewed).unwrap().at(),
            at + Duration::from_secs(1)
        );
        assert_eq!(
            Expiry::of_registration(&v1::RegisterKeysResponse::default()),
            None
        );
    }
}
