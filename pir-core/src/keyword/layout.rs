//! The keyword layout: the parameters that place a CPI's entries in a snapshot, given the CPI's
//! OPRF output `y` (layout version 2, `docs/mapping-format.md` §8).
//!
//! One function, [`KeywordLayout::locate`], used by the builder, the updater and the client
//! alike: it gives the CPI's bucket, its slot tags and the key that opens its sealed record
//! ([`super::derive`]). Without `y`, which only the DP's OPRF key gives, nothing in a bucket can
//! be attributed to a CPI.

use bincode::{Decode, Encode};

use super::derive::{EntrySecrets, shard_of};
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
    /// Which shard of the DP's directory this snapshot holds (0 of 1 when not sharded).
    pub shard: ShardPosition,
}

/// A snapshot's place among the shards of a directory: a CPI whose OPRF output `y` gives
/// [`shard_of`]`(y, count) == index` is stored in this shard or nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct ShardPosition {
    /// This shard's index, below `count`.
    pub index: u32,
    /// Shards in the directory.
    pub count: u32,
}

impl ShardPosition {
    /// An unsharded directory: one shard holds every CPI.
    pub const SINGLE: Self = Self { index: 0, count: 1 };

    /// Largest number of shards a directory may have.
    pub const MAX_COUNT: u32 = 1 << 20;

    /// Shard `index` of `count`, checked.
    pub fn new(index: u32, count: u32) -> Result<Self> {
        let shard = Self { index, count };
        shard.check().map_err(CoreError::Layout)?;
        Ok(shard)
    }

    pub(crate) fn check(&self) -> Result<(), LayoutError> {
        if self.count == 0 || self.count > Self::MAX_COUNT || self.index >= self.count {
            return Err(LayoutError::Shard {
                index: self.index,
                count: self.count,
            });
        }
        Ok(())
    }

    /// True when the CPI whose OPRF output is `y` belongs to this shard.
    pub fn holds(&self, y: &OprfOutput) -> bool {
        shard_of(y, self.count) == self.index
    }

    /// True for a directory of more than one shard.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }
}

impl std::fmt::Display for ShardPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

impl KeywordLayout {
    /// A layout of the current version for an unsharded directory, checked.
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
            shard: ShardPosition::SINGLE,
        };
        layout.validate()?;
        Ok(layout)
    }

    /// This layout for shard `shard` of a directory.
    pub fn in_shard(self, shard: ShardPosition) -> Self {
        Self { shard, ..self }
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
        self.shard.check()
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
