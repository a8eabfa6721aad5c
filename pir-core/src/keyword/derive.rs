//! Keyword layout version 2: everything about a CPI's place and entries comes from its OPRF
//! output `y` ([`crate::oprf`]), through HKDF-SHA256 (RFC 5869) with one label per output:
//!
//! ```text
//! prk    = HKDF-Extract(salt = "pir-discovery/keyword/v2", IKM = y)          64-byte y
//! shard  = u64_le(HKDF-Expand(prk, "shard", 8))                               layout-independent
//! bucket = (u64_le(HKDF-Expand(prk, "bucket"      || salt, 8)) * num_buckets) >> 64
//! tag    =        HKDF-Expand(prk, "tag"         || salt, 8)
//! key    =        HKDF-Expand(prk, "entry-key"   || salt, 32)
//! nonce  =        HKDF-Expand(prk, "entry-nonce" || salt, 12)
//! tag_i, nonce_i = the same with info "tag" || salt || u32le(i), i >= 1        slot i
//! entry  = AES-256-GCM-SIV(key, nonce, plaintext, associated data = tag)     RFC 8452
//! ```
//!
//! `salt` is the snapshot's 32-byte layout salt, so a new build moves every CPI and changes every
//! key; the shard index does not depend on it, so a CPI stays in its shard across builds. Labels
//! are ASCII without terminator; `salt` is appended raw. Integer maths only, so every platform
//! and language agrees; the outputs are pinned in `test_vectors/keyword_v2.json`.
//!
//! Why GCM-SIV: the nonce is derived, not random, so the same CPI under the same layout always
//! gets the same (key, nonce). An update that changes a CPI's mappings keeps its layout, and with
//! it the nonce; GCM-SIV is the AEAD whose security survives that (a repeated nonce reveals only
//! whether two plaintexts are equal, which the update's changed bucket shows anyway).

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hkdf::Hkdf;
use sha2::Sha256;

use super::{BucketIndex, Location, Tag};
use crate::{
    error::{CoreError, Result},
    oprf::OprfOutput,
};

const EXTRACT_SALT: &[u8] = b"pir-discovery/keyword/v2";
/// Bytes the AEAD adds to a sealed entry (its authentication tag).
pub const SEAL_OVERHEAD: usize = 16;

/// What a CPI's OPRF output gives under one layout: where its entries are and the key that
/// opens them. Holds key material: `Debug` shows only the location.
///
/// A CPI's record fills one or more fixed-size slots (`keyword::entry`). Slot 0 uses `tag` and
/// `nonce` above; slot `i >= 1` uses `tag_i` and `nonce_i`, the same labels with `u32le(i)`
/// appended to the info after the salt, so a CPI's slots cannot be linked to each other.
#[derive(Clone)]
pub struct EntrySecrets {
    location: Location,
    key: [u8; 32],
    nonce: [u8; 12],
    prk: Hkdf<Sha256>,
    salt: [u8; 32],
}

/// The shard a CPI belongs to among `shards` (the same for every build and layout).
pub fn shard_of(y: &OprfOutput, shards: u32) -> u32 {
    let word = u64::from_le_bytes(expand::<8>(&prk(y), b"shard", &[]));
    ((word as u128 * shards as u128) >> 64) as u32
}

impl EntrySecrets {
    /// The location and entry key of the CPI whose OPRF output is `y`, in a layout of
    /// `num_buckets` buckets salted with `salt`.
    pub fn derive(y: &OprfOutput, salt: &[u8; 32], num_buckets: u32) -> Self {
        let prk = prk(y);
        let word = u64::from_le_bytes(expand::<8>(&prk, b"bucket", salt));
        let bucket = ((word as u128 * num_buckets as u128) >> 64) as u32;
        Self {
            location: Location {
                bucket: BucketIndex(bucket),
                tag: Tag(expand::<8>(&prk, b"tag", salt)),
            },
            key: expand::<32>(&prk, b"entry-key", salt),
            nonce: expand::<12>(&prk, b"entry-nonce", salt),
            prk,
            salt: *salt,
        }
    }

    /// The CPI's bucket and the tag of its first slot.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The tag of the CPI's slot `index`.
    pub fn slot_tag(&self, index: u32) -> Tag {
        match index {
            0 => self.location.tag,
            i => Tag(self.expand_slot::<8>(b"tag", i)),
        }
    }

    fn slot_nonce(&self, index: u32) -> [u8; 12] {
        match index {
            0 => self.nonce,
            i => self.expand_slot::<12>(b"entry-nonce", i),
        }
    }

    fn expand_slot<const N: usize>(&self, label: &[u8], index: u32) -> [u8; N] {
        let mut out = [0u8; N];
        let info: [&[u8]; 3] = [label, &self.salt, &index.to_le_bytes()];
        // HKDF-SHA256 gives up to 8160 bytes; N is at most 12 here.
        if self.prk.expand_multi_info(&info, &mut out).is_err() {
            unreachable!("an HKDF-SHA256 output of {N} bytes");
        }
        out
    }

    /// Encrypts and authenticates `plaintext` (the CPI's compact mappings), bound to its tag.
    /// The result is [`SEAL_OVERHEAD`] bytes longer. The same as `seal_slot(0, ..)`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.seal_slot(0, plaintext)
    }

    /// Decrypts an entry sealed by [`EntrySecrets::seal`]; anything else (another CPI's entry, a
    /// flipped bit, random bytes) is [`CoreError::SealedEntry`].
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        self.open_slot(0, sealed)
    }

    /// Seals the chunk of slot `index`, bound to that slot's tag and nonce.
    pub fn seal_slot(&self, index: u32, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.cipher()
            .encrypt(
                Nonce::from_slice(&self.slot_nonce(index)),
                Payload {
                    msg: plaintext,
                    aad: &self.slot_tag(index).0,
                },
            )
            .map_err(|_| CoreError::Internal("AES-GCM-SIV refused a plaintext"))
    }

    /// Opens the chunk of slot `index`; anything not sealed for that slot of this CPI is
    /// [`CoreError::SealedEntry`].
    pub fn open_slot(&self, index: u32, sealed: &[u8]) -> Result<Vec<u8>> {
        self.cipher()
            .decrypt(
                Nonce::from_slice(&self.slot_nonce(index)),
                Payload {
                    msg: sealed,
                    aad: &self.slot_tag(index).0,
                },
            )
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

    #[test]
    fn labels_separate_every_output() {
        let s = EntrySecrets::derive(&y(1), &[7; 32], 1000);
        let prk = prk(&y(1));
        let outputs = [
            expand::<8>(&prk, b"shard", &[]).to_vec(),
            expand::<8>(&prk, b"bucket", &[7; 32]).to_vec(),
            s.location().tag.0.to_vec(),
            s.key[..8].to_vec(),
            s.nonce[..8].to_vec(),
        ];
        for (i, a) in outputs.iter().enumerate() {
            for b in &outputs[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Another salt moves the CPI and changes its key, but not its shard.
        let t = EntrySecrets::derive(&y(1), &[8; 32], 1000);
        assert_ne!(s.location().tag, t.location().tag);
        assert_ne!(s.key, t.key);
        assert_eq!(shard_of(&y(1), 10_000), shard_of(&y(1), 10_000));
        assert!(s.location().bucket.0 < 1000);
    }

    #[test]
    fn buckets_and_shards_spread_evenly() {
        let key = OprfKey::generate(&mut rand::thread_rng()).unwrap();
        let mut buckets = [0u32; 16];
        let mut shards = [0u32; 4];
        for i in 0..4000 {
            let cpi = Cpi::parse(&format!("tel:+1415555{i:04}")).unwrap();
            let y = key.evaluate(&cpi).unwrap();
            buckets[EntrySecrets::derive(&y, &[0; 32], 16).location().bucket.0 as usize] += 1;
            shards[shard_of(&y, 4) as usize] += 1;
        }
        // 250 and 1000 expected; a 40% band is many standard deviations wide.
        assert!(
            buckets.iter().all(|&n| (150..350).contains(&n)),
            "{buckets:?}"
        );
        assert!(
            shards.iter().all(|&n| (800..1200).contains(&n)),
            "{shards:?}"
        );
    }

    #[test]
    fn sealed_entries_open_only_under_their_own_secrets() {
        let s = EntrySecrets::derive(&y(1), &[7; 32], 64);
        let sealed = s.seal(b"compact mappings").unwrap();
        assert_eq!(sealed.len(), 16 + SEAL_OVERHEAD);
        assert_eq!(s.open(&sealed).unwrap(), b"compact mappings");
        // Deterministic: the same CPI and layout seal the same bytes the same way.
        assert_eq!(s.seal(b"compact mappings").unwrap(), sealed);
        // Another CPI's secrets, a flipped bit, a truncation: all refused the same way.
        let other = EntrySecrets::derive(&y(2), &[7; 32], 64);
        assert!(matches!(other.open(&sealed), Err(CoreError::SealedEntry)));
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert!(matches!(s.open(&flipped), Err(CoreError::SealedEntry)));
        assert!(matches!(s.open(&sealed[..10]), Err(CoreError::SealedEntry)));
        // The tag is bound: the same key and nonce with another tag do not open it.
        let mut moved = s.clone();
        moved.location.tag.0[0] ^= 1;
        assert!(matches!(moved.open(&sealed), Err(CoreError::SealedEntry)));
        // Debug shows no key material.
        let shown = format!("{s:?}");
        assert!(!shown.contains("key:"), "{shown}");
    }
}
