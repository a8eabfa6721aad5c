//! The keyword layout: the parameters that place a CPI's entries in a snapshot, given the CPI's
//! OPRF output `y` (layout version 2, `docs/mapping-format.md` §8).
//!
//! One function, [`KeywordLayout::locate`], used by the builder, the updater and the client
//! alike: it gives the CPI's bucket, its slot tags and the key that opens its sealed record
//! ([`super::derive`]). Without `y`, which only the DP's OPRF key gives, nothing in a bucket can
//! be attributed to a CPI.

use bincode::{Decode, Encode};

use super::derive::EntrySecrets;
use crate::{
    error::{CoreError, LayoutError, Result},
    oprf::{OprfOutput, OprfPublicKey},
};

/// Version of the keyword layout: 2, keyed by the DP's oblivious PRF. Version 1 (a public salted
/// hash of the CPI) is no longer built or read: it let anyone attribute every entry.
pub const LAYOUT_VERSION: u32 = 2;

/// Bytes a slot adds to its chunk of a record: the tag and the AEAD's authentication tag.
pub const SLOT_OVERHEAD: usize = 8 + super::derive::SEAL_OVERHEAD;

/// Smallest and largest chunk of a record a slot may hold.
pub const SLOT_BYTES_RANGE: std::ops::RangeInclusive<u32> = 16..=4096;

/// Index of a bucket, which is also the index of the PIR item that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketIndex(pub u32);

/// Marks one slot of a CPI's record inside its bucket (pseudorandom without the CPI's `y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub [u8; 8]);

/// Where a CPI lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Its bucket.
    pub bucket: BucketIndex,
    /// The tag of its first slot within the bucket.
    pub tag: Tag,
}

/// What a snapshot publishes about its layout, in its header and in `GetConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct KeywordLayout {
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// Chosen per build: a new build moves every CPI and changes every key.
    pub salt: [u8; 32],
    /// Buckets, one per PIR item.
    pub num_buckets: u32,
    /// Bytes of a record a slot holds (a slot takes [`SLOT_OVERHEAD`] more).
    pub slot_bytes: u32,
    /// The DP's OPRF public key: every `y` a client uses is proven against it.
    pub oprf_key: OprfPublicKey,
}

impl KeywordLayout {
    /// A layout of the current version, checked.
    pub fn new(
        salt: [u8; 32],
        num_buckets: u32,
        slot_bytes: u32,
        oprf_key: OprfPublicKey,
    ) -> Result<Self> {
        let layout = Self {
            version: LAYOUT_VERSION,
            salt,
            num_buckets,
            slot_bytes,
            oprf_key,
        };
        layout.validate()?;
        Ok(layout)
    }

    /// Checks a layout read from elsewhere (a header, the wire).
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(CoreError::Layout)
    }

    pub(crate) fn check(&self) -> Result<(), LayoutError> {
        if self.version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                found: self.version,
                supported: LAYOUT_VERSION,
            });
        }
        if self.num_buckets == 0 {
            return Err(LayoutError::ZeroBuckets);
        }
        if !SLOT_BYTES_RANGE.contains(&self.slot_bytes) {
            return Err(LayoutError::SlotBytes {
                got: self.slot_bytes,
            });
        }
        Ok(())
    }

    /// Bytes one slot takes in a bucket.
    pub fn slot_len(&self) -> usize {
        self.slot_bytes as usize + SLOT_OVERHEAD
    }

    /// The bucket, slot tags and entry key of the CPI whose OPRF output is `y`.
    pub fn locate(&self, y: &OprfOutput) -> EntrySecrets {
        EntrySecrets::derive(y, &self.salt, self.num_buckets)
    }
}
