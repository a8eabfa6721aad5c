//! Keyword layout version 3: everything about a CPI's place and record comes from its OPRF
//! output `y` ([`crate::oprf`]), through HKDF-SHA256 (RFC 5869) with one label per output, and
//! the public choice table of the layout:
//!
//! ```text
//! prk       = HKDF-Extract(salt = "pir-discovery/keyword/v3", IKM = y)            64-byte y
//! shard     = (u64le(HKDF-Expand(prk, "shard", 8)) * shards) >> 64              layout-independent
//! group     = (u64le(HKDF-Expand(prk, "group" || salt, 8)) * num_groups) >> 64
//! mask      =        HKDF-Expand(prk, "locator" || salt, 6)
//! key       =        HKDF-Expand(prk, "entry-key" || salt, 32)
//! nonce     =        HKDF-Expand(prk, "entry-nonce" || salt, 12)
//! candidate(group, c) = (u64le(SHA-256("pir-discovery/keyword/v3/candidate\0" || salt
//!                         || u32le(group) || u8(c))[0..8]) * num_buckets) >> 64     c in 0..4
//! bucket    = candidate(group, choice(group))                 choice: the layout's public table
//! sealed    = AES-256-GCM-SIV(key, nonce, record, associated data = empty)      RFC 8452
//! ```
//!
//! `salt` is the snapshot's 32-byte layout salt, so a new build moves every CPI and changes every
//! key; the shard index does not depend on it, so a CPI stays in its shard across builds. The
//! candidates of a group depend on the salt and the group number only: the choice table says
//! nothing about any CPI that its group does not. Labels are ASCII without terminator; `salt` is
//! appended raw. Integer maths only, so every platform and language agrees; the outputs are
//! pinned in `test_vectors/keyword_v3.json`.
//!
//! Why GCM-SIV: the nonce is derived, not random, so the same CPI under the same layout always
//! gets the same (key, nonce). An update that changes a CPI's record keeps its layout, and with
//! it the nonce; GCM-SIV is the AEAD whose security survives that (a repeated nonce reveals only
//! whether two plaintexts are equal, which the update's changed bucket shows anyway).

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit},
};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use super::{BucketIndex, GroupIndex, KeywordLayout, Location};
use crate::{
    error::{CoreError, Result},
    oprf::OprfOutput,
};

const EXTRACT_SALT: &[u8] = b"pir-discovery/keyword/v3";
const CANDIDATE_CONTEXT: &[u8] = b"pir-discovery/keyword/v3/candidate\0";
/// Bytes the AEAD adds to a sealed record (its authentication tag).
pub const SEAL_OVERHEAD: usize = 16;
/// Bytes of a locator mask.
pub const MASK_BYTES: usize = 6;

/// What a CPI's OPRF output gives under one layout: where its record is, the mask of its
/// locator and the key that opens the record. Holds key material: `Debug` shows only the
/// location.
#[derive(Clone)]
pub struct EntrySecrets {
    location: Location,
    mask: [u8; MASK_BYTES],
    key: [u8; 32],
    nonce: [u8; 12],
}

/// The shard a CPI belongs to among `shards` (the same for every build and layout).
pub fn shard_of(y: &OprfOutput, shards: u32) -> u32 {
    let word = u64::from_le_bytes(expand::<8>(&prk(y), b"shard", &[]));
    reduce(word, shards)
}

/// The group of the CPI whose OPRF output is `y`, among `num_groups` salted with `salt`.
pub fn group_of(y: &OprfOutput, salt: &[u8; 32], num_groups: u32) -> GroupIndex {
    let word = u64::from_le_bytes(expand::<8>(&prk(y), b"group", salt));
    GroupIndex(reduce(word, num_groups))
}

/// Candidate `c` of group `group`'s buckets, among `num_buckets` salted with `salt`: public,
/// from the salt and the group number alone.
pub fn candidate(salt: &[u8; 32], group: GroupIndex, c: u32, num_buckets: u32) -> BucketIndex {
    let digest = Sha256::new()
        .chain_update(CANDIDATE_CONTEXT)
        .chain_update(salt)
        .chain_update(group.0.to_le_bytes())
        .chain_update([c as u8])
        .finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    BucketIndex(reduce(u64::from_le_bytes(word), num_buckets))
}

/// `(word * n) >> 64`: a uniform 64-bit word to `0..n` without division or floating point.
fn reduce(word: u64, n: u32) -> u32 {
    ((word as u128 * n as u128) >> 64) as u32
}

impl EntrySecrets {
    /// The location, locator mask and record key of the CPI whose OPRF output is `y`, in
    /// `layout`.
    pub fn derive(y: &OprfOutput, layout: &KeywordLayout) -> Self {
        let prk = prk(y);
        let salt = &layout.salt;
        let word = u64::from_le_bytes(expand::<8>(&prk, b"group", salt));
        let group = GroupIndex(reduce(word, layout.num_groups));
        Self {
            location: Location {
                group,
                bucket: layout.bucket_of(group),
            },
            mask: expand::<MASK_BYTES>(&prk, b"locator", salt),
            key: expand::<32>(&prk, b"entry-key", salt),
            nonce: expand::<12>(&prk, b"entry-nonce", salt),
        }
    }

    /// The CPI's group and bucket.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The mask of the CPI's locator in its bucket.
    pub fn mask(&self) -> [u8; MASK_BYTES] {
        self.mask
    }

    /// Encrypts and authenticates `record` (the CPI's compact statements). The result is
    /// [`SEAL_OVERHEAD`] bytes longer.
    pub fn seal(&self, record: &[u8]) -> Result<Vec<u8>> {
        self.cipher()
            .encrypt(Nonce::from_slice(&self.nonce), record)
            .map_err(|_| CoreError::Internal("AES-GCM-SIV refused a plaintext"))
    }

    /// Decrypts a record sealed by [`EntrySecrets::seal`]; anything else (another CPI's record,
    /// a flipped bit, random bytes) is [`CoreError::SealedEntry`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        self.cipher()
            .decrypt(Nonce::from_slice(&self.nonce), sealed)
            .map_err(|_| CoreError::SealedEntry)
    }

    fn cipher(&self) -> Aes256GcmSiv {
        Aes256GcmSiv::new(&self.key.into())
    }
}

impl std::fmt::Debug for EntrySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntrySecrets")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn prk(y: &OprfOutput) -> Hkdf<Sha256> {
    Hkdf::<Sha256>::new(Some(EXTRACT_SALT), y.as_bytes())
}

fn expand<const N: usize>(prk: &Hkdf<Sha256>, label: &[u8], salt: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    // HKDF-SHA256 gives up to 8160 bytes; N is at most 32 here.
    if prk.expand_multi_info(&[label, salt], &mut out).is_err() {
        unreachable!("an HKDF-SHA256 output of {N} bytes");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{identity::Cpi, oprf::OprfKey};

    fn y(byte: u8) -> OprfOutput {
        OprfOutput([byte; 64])
    }

    fn layout(salt: u8, buckets: u32, groups: u32) -> KeywordLayout {
        KeywordLayout::new(
            [salt; 32],
            buckets,
            groups,
            OprfKey::derive(&[1; 32], b"t").unwrap().public(),
        )
        .unwrap()
    }

    #[test]
    fn labels_separate_every_output() {
        let l = layout(7, 1000, 300);
        let s = EntrySecrets::derive(&y(1), &l);
        let prk = prk(&y(1));
        let outputs = [
            expand::<8>(&prk, b"shard", &[]).to_vec(),
            expand::<8>(&prk, b"group", &[7; 32]).to_vec(),
            s.mask[..6].to_vec(),
            s.key[..6].to_vec(),
            s.nonce[..6].to_vec(),
        ];
        for (i, a) in outputs.iter().enumerate() {
            for b in &outputs[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Another salt moves the CPI and changes its key, but not its shard.
        let t = EntrySecrets::derive(&y(1), &layout(8, 1000, 300));
        assert_ne!(s.mask, t.mask);
        assert_ne!(s.key, t.key);
        assert!(s.location().bucket.0 < 1000 && s.location().group.0 < 300);
        // The bucket is the group's chosen candidate.
        let mut moved = l.clone();
        let g = s.location().group;
        moved.set_choice(g, 2);
        assert_eq!(
            EntrySecrets::derive(&y(1), &moved).location().bucket,
            candidate(&l.salt, g, 2, 1000)
        );
    }

    #[test]
    fn groups_candidates_and_shards_spread_evenly() {
        let key = OprfKey::generate(&mut rand::thread_rng()).unwrap();
        let mut groups = [0u32; 16];
        let mut shards = [0u32; 4];
        for i in 0..4000 {
            let cpi = Cpi::parse(&format!("tel:+1415555{i:04}")).unwrap();
            let y = key.evaluate(&cpi).unwrap();
            groups[group_of(&y, &[0; 32], 16).0 as usize] += 1;
            shards[shard_of(&y, 4) as usize] += 1;
        }
        let mut buckets = [0u32; 16];
        for g in 0..1000 {
            for c in 0..4 {
                buckets[candidate(&[0; 32], GroupIndex(g), c, 16).0 as usize] += 1;
            }
        }
        // 250, 1000 and 250 expected; a 40% band is many standard deviations wide.
        assert!(
            groups.iter().all(|&n| (150..350).contains(&n)),
            "{groups:?}"
        );
        assert!(
            shards.iter().all(|&n| (800..1200).contains(&n)),
            "{shards:?}"
        );
        assert!(
            buckets.iter().all(|&n| (150..350).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn sealed_records_open_only_under_their_own_secrets() {
        let l = layout(7, 64, 16);
        let s = EntrySecrets::derive(&y(1), &l);
        let sealed = s.seal(b"compact mappings").unwrap();
        assert_eq!(sealed.len(), 16 + SEAL_OVERHEAD);
        assert_eq!(s.open(&sealed).unwrap(), b"compact mappings");
        // Deterministic: the same CPI and layout seal the same bytes the same way.
        assert_eq!(s.seal(b"compact mappings").unwrap(), sealed);
        // Another CPI's secrets, a flipped bit, a truncation: all refused the same way.
        let other = EntrySecrets::derive(&y(2), &l);
        assert!(matches!(other.open(&sealed), Err(CoreError::SealedEntry)));
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert!(matches!(s.open(&flipped), Err(CoreError::SealedEntry)));
        assert!(matches!(s.open(&sealed[..10]), Err(CoreError::SealedEntry)));
        // Debug shows no key material.
        let shown = format!("{s:?}");
        assert!(!shown.contains("key:"), "{shown}");
    }
}
