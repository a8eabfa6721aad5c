//! The proof of possession on queries: a key id names a client's keys, and anyone who sees it
//! could send queries under it; a MAC over every query request, with a key only the client and
//! the server hold, makes the key id useless to them.
//!
//! ```text
//! client                                            server
//! mac key = HMAC-SHA256(secret seed, KEY_LABEL)
//! RegisterKeys(public keys, mac key) ─────────────▶ keeps the mac key beside the keys
//! Query(key id, epoch, queries,
//!       mac = HMAC-SHA256(mac key, transcript)) ──▶ recomputes, compares in constant time,
//!                                                   before any token is charged or slot taken
//! transcript = TAG_LABEL || key id (32 bytes) || epoch (u64 LE) || query count (u64 LE)
//!              || for each query: its length (u64 LE) || its bytes
//! ```
//!
//! The mac key is derived from the client's secret seed, under its own label, so a client with
//! a key file needs nothing new stored; the seed's other use (spiral-rs's secret keys) never
//! sees the label. The mac key travels once, inside RegisterKeys, which is as confidential as
//! the channel (TLS in production). A request's MAC covers everything the server acts on, so a
//! recorded request cannot be altered; it can be replayed, which spends the owner's budget no
//! faster than the owner did (each replay is the same queries, answered again).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{lookup::KeyId, pir::ClientSecret};

type HmacSha256 = Hmac<Sha256>;

/// The label the mac key is derived under (domain separation from every other use of the seed).
const KEY_LABEL: &[u8] = b"pir-discovery/query-mac-key/v1\0";
/// The label every MAC'd transcript starts with.
const TAG_LABEL: &[u8] = b"pir-discovery/query-mac/v1\0";
/// The label of an Evaluate request's transcript, whose epoch field is always 0 (an evaluation
/// does not depend on the snapshot): a query's MAC never stands for an evaluation's.
const EVALUATE_TAG_LABEL: &[u8] = b"pir-discovery/evaluate-mac/v1\0";
/// The label of a RenewKeys request's transcript (epoch 0, no elements): proof that the renewer
/// holds the keys, so that a key id alone cannot keep a registration alive.
const RENEW_TAG_LABEL: &[u8] = b"pir-discovery/renew-mac/v1\0";

/// Bytes of a mac key and of a MAC.
pub const QUERY_MAC_BYTES: usize = 32;

/// The key a client's query requests are authenticated with; the server keeps a copy.
#[derive(Clone)]
pub struct QueryMacKey([u8; QUERY_MAC_BYTES]);

impl std::fmt::Debug for QueryMacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryMacKey(..)")
    }
}

/// In constant time: a server compares a re-registration's key with the one it holds.
impl PartialEq for QueryMacKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for QueryMacKey {}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

impl QueryMacKey {
    /// The mac key of the client whose secret seed is `secret`.
    pub fn derive(secret: &ClientSecret) -> Self {
        let mut mac = hmac(&secret.0);
        mac.update(KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// A mac key received on the wire.
    pub fn from_bytes(bytes: [u8; QUERY_MAC_BYTES]) -> Self {
        Self(bytes)
    }

    /// The bytes to send in RegisterKeys.
    pub fn to_bytes(&self) -> [u8; QUERY_MAC_BYTES] {
        self.0
    }

    fn transcript(
        &self,
        label: &[u8],
        key_id: &KeyId,
        epoch: u64,
        queries: &[impl AsRef<[u8]>],
    ) -> HmacSha256 {
        let mut mac = hmac(&self.0);
        mac.update(label);
        mac.update(&key_id.0);
        mac.update(&epoch.to_le_bytes());
        mac.update(&(queries.len() as u64).to_le_bytes());
        for q in queries {
            let q = q.as_ref();
            mac.update(&(q.len() as u64).to_le_bytes());
            mac.update(q);
        }
        mac
    }

    /// The MAC of a query request: key id, epoch and every query, in order.
    pub fn tag(
        &self,
        key_id: &KeyId,
        epoch: u64,
        queries: &[impl AsRef<[u8]>],
    ) -> [u8; QUERY_MAC_BYTES] {
        self.transcript(TAG_LABEL, key_id, epoch, queries)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` is the MAC of this request, compared in constant time.
    pub fn verify(
        &self,
        key_id: &KeyId,
        epoch: u64,
        queries: &[impl AsRef<[u8]>],
        tag: &[u8],
    ) -> bool {
        self.transcript(TAG_LABEL, key_id, epoch, queries)
            .verify_slice(tag)
            .is_ok()
    }

    /// The MAC of an Evaluate request: the key id and every blinded element, under a label of
    /// its own.
    pub fn tag_evaluation(
        &self,
        key_id: &KeyId,
        elements: &[impl AsRef<[u8]>],
    ) -> [u8; QUERY_MAC_BYTES] {
        self.transcript(EVALUATE_TAG_LABEL, key_id, 0, elements)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks an Evaluate request's MAC in constant time.
    pub fn verify_evaluation(
        &self,
        key_id: &KeyId,
        elements: &[impl AsRef<[u8]>],
        tag: &[u8],
    ) -> bool {
        self.transcript(EVALUATE_TAG_LABEL, key_id, 0, elements)
            .verify_slice(tag)
            .is_ok()
    }

    /// The MAC of a RenewKeys request: the key id, under a label of its own. A recorded one can
    /// be replayed, which only keeps the owner's registration alive as the owner asked.
    pub fn tag_renewal(&self, key_id: &KeyId) -> [u8; QUERY_MAC_BYTES] {
        self.transcript(RENEW_TAG_LABEL, key_id, 0, &[] as &[&[u8]])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a RenewKeys request's MAC in constant time.
    pub fn verify_renewal(&self, key_id: &KeyId, tag: &[u8]) -> bool {
        self.transcript(RENEW_TAG_LABEL, key_id, 0, &[] as &[&[u8]])
            .verify_slice(tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> QueryMacKey {
        QueryMacKey::derive(&ClientSecret::from_bytes([seed; 32]))
    }

    #[test]
    fn the_key_is_the_seeds_and_only_the_seeds() {
        assert_eq!(key(1), key(1));
        assert_ne!(key(1), key(2));
        // Not the seed itself: the mac key given to a server reveals nothing of the secret keys.
        assert_ne!(key(1).to_bytes(), [1; 32]);
        assert_eq!(QueryMacKey::from_bytes(key(1).to_bytes()), key(1));
    }

    #[test]
    fn an_evaluation_tag_is_not_a_query_tag() {
        let k = key(3);
        let id = KeyId([9; 32]);
        let elements = [[5u8; 32], [6; 32]];
        let tag = k.tag_evaluation(&id, &elements);
        assert!(k.verify_evaluation(&id, &elements, &tag));
        assert!(!k.verify(&id, 0, &elements, &tag));
        assert!(!k.verify_evaluation(&id, &[[5u8; 32]], &tag));
        assert!(!k.verify_evaluation(&id, &elements, &k.tag(&id, 0, &elements)));
    }

    #[test]
    fn a_renewal_tag_is_neither_a_query_nor_an_evaluation_tag() {
        let k = key(3);
        let id = KeyId([9; 32]);
        let tag = k.tag_renewal(&id);
        assert!(k.verify_renewal(&id, &tag));
        assert!(!k.verify_renewal(&KeyId([8; 32]), &tag), "another key id");
        assert!(!key(4).verify_renewal(&id, &tag), "another key");
        let none: [&[u8]; 0] = [];
        assert!(!k.verify(&id, 0, &none, &tag));
        assert!(!k.verify_evaluation(&id, &none, &tag));
        assert!(!k.verify_renewal(&id, &k.tag(&id, 0, &none)));
    }

    #[test]
    fn a_tag_binds_the_key_id_the_epoch_and_every_query() {
        let k = key(3);
        let id = KeyId([9; 32]);
        let queries = [vec![1u8, 2, 3], vec![4]];
        let tag = k.tag(&id, 7, &queries);
        assert!(k.verify(&id, 7, &queries, &tag));
        assert!(!key(4).verify(&id, 7, &queries, &tag), "another key");
        assert!(
            !k.verify(&KeyId([8; 32]), 7, &queries, &tag),
            "another key id"
        );
        assert!(!k.verify(&id, 8, &queries, &tag), "another epoch");
        assert!(
            !k.verify(&id, 7, &[vec![1u8, 2, 3]], &tag),
            "a query dropped"
        );
        // The lengths are framed: moving a byte from one query to the next changes the tag.
        assert!(
            !k.verify(&id, 7, &[vec![1u8, 2], vec![3, 4]], &tag),
            "reframed"
        );
        assert!(!k.verify(&id, 7, &queries, &tag[..31]), "a short tag");
        assert!(!k.verify(&id, 7, &queries, &[]), "no tag");
    }
}
