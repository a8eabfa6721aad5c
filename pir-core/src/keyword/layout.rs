//! The keyword layout: the parameters that place a CPI's record in a snapshot, given the CPI's
//! OPRF output `y` (layout version 3, `docs/mapping-format.md` §8).
//!
//! One function, [`KeywordLayout::locate`], used by the builder, the updater and the client
//! alike: it gives the CPI's bucket, the mask of its locator and the key that opens its sealed
//! record ([`super::derive`]). Without `y`, which only the DP's OPRF key gives, nothing in a
//! bucket can be attributed to a CPI.
//!
//! Version 3 places a CPI in two steps: `y` gives its *group*; each group has
//! [`CANDIDATES`] candidate buckets derived from the salt and the group number alone, and the
//! public *choice table* says which candidate the group uses. The builder fills the table so
//! that buckets are evenly loaded (every group to its least loaded candidate, largest first),
//! which lets a database be filled to well above what one hash per CPI allows, with one PIR
//! query per lookup. The table depends on the OPRF outputs only, is the same for every client
//! and comes with the (signed) header. The layout also carries the dictionaries of MSP names
//! and issuer ids that compact mappings refer to by index.

use bincode::{Decode, Encode};

use super::derive::{EntrySecrets, shard_of};
use crate::{
    error::{CoreError, LayoutError, Result},
    identity::IssuerId,
    oprf::{OprfOutput, OprfPublicKey},
};

/// Version of the keyword layout: 3, keyed by the DP's oblivious PRF, placed by a public choice
/// table, records of variable length behind masked locators. Versions 1 (a public salted hash
/// of the CPI) and 2 (one hash per CPI, fixed-size slots) are no longer built or read.
pub const LAYOUT_VERSION: u32 = 3;

/// Candidate buckets of a group; the choice table spends log2 of it, 2 bits, per group.
pub const CANDIDATES: u32 = 4;

/// Bytes a CPI's record costs in its bucket beyond the record itself: its locator and the
/// AEAD's authentication tag.
pub const RECORD_OVERHEAD: usize = super::bucket::LOCATOR_BYTES + super::derive::SEAL_OVERHEAD;

/// Largest item a version-3 bucket can address (its locators hold 16-bit offsets).
pub const MAX_ITEM_BYTES: u32 = 1 << 16;

/// Most groups a layout may have (a choice table of 1 MiB at most, inside the header's bound).
pub const MAX_GROUPS: u32 = 1 << 22;

/// Most names (and issuer ids) a dictionary may hold: an index is at most 2 bytes.
pub const MAX_DICTIONARY: usize = 1 << 16;

/// Index of a bucket, which is also the index of the PIR item that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketIndex(pub u32);

/// Index of a group of CPIs, which share a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupIndex(pub u32);

/// Where a CPI lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Its group.
    pub group: GroupIndex,
    /// Its bucket: the group's chosen candidate.
    pub bucket: BucketIndex,
}

/// What a snapshot publishes about its layout, in its header and in `GetConfig`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct KeywordLayout {
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// Chosen per build: a new build moves every CPI and changes every key.
    pub salt: [u8; 32],
    /// Buckets, one per PIR item.
    pub num_buckets: u32,
    /// Groups CPIs are hashed to.
    pub num_groups: u32,
    /// Which candidate each group uses: 2 bits a group, group `g` in bits `2(g % 4)` and up of
    /// byte `g / 4`; `ceil(num_groups / 4)` bytes, unused bits zero.
    pub choices: Vec<u8>,
    /// The MSP names compact mappings refer to by index: normalised, distinct.
    pub msps: Vec<String>,
    /// The issuer ids statements refer to by index: distinct.
    pub issuers: Vec<[u8; 8]>,
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

/// Bytes of a choice table for `num_groups` groups.
pub fn choice_table_len(num_groups: u32) -> usize {
    (num_groups as usize).div_ceil(4)
}

impl KeywordLayout {
    /// A layout of the current version for an unsharded directory, checked: every group uses
    /// its first candidate until [`KeywordLayout::set_choice`] says otherwise, and the
    /// dictionaries are empty until [`KeywordLayout::with_dictionaries`].
    pub fn new(
        salt: [u8; 32],
        num_buckets: u32,
        num_groups: u32,
        oprf_key: OprfPublicKey,
    ) -> Result<Self> {
        let layout = Self {
            version: LAYOUT_VERSION,
            salt,
            num_buckets,
            num_groups,
            choices: vec![0; choice_table_len(num_groups)],
            msps: Vec::new(),
            issuers: Vec::new(),
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

    /// This layout with the given dictionaries, checked.
    pub fn with_dictionaries(self, msps: Vec<String>, issuers: Vec<IssuerId>) -> Result<Self> {
        let layout = Self {
            msps,
            issuers: issuers.into_iter().map(|i| i.0).collect(),
            ..self
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
        if self.num_groups == 0 || self.num_groups > MAX_GROUPS {
            return Err(LayoutError::Groups {
                got: self.num_groups,
            });
        }
        let expected = choice_table_len(self.num_groups);
        if self.choices.len() != expected {
            return Err(LayoutError::ChoiceTable {
                expected,
                got: self.choices.len(),
            });
        }
        let used = (self.num_groups % 4) * 2;
        if used != 0 && self.choices[expected - 1] >> used != 0 {
            return Err(LayoutError::ChoiceTablePadding);
        }
        if self.msps.len() > MAX_DICTIONARY || self.issuers.len() > MAX_DICTIONARY {
            return Err(LayoutError::DictionarySize);
        }
        for msp in &self.msps {
            if crate::identity::normalise_msp(msp).ok().as_ref() != Some(msp) {
                return Err(LayoutError::DictionaryName);
            }
        }
        if has_duplicates(&self.msps) || has_duplicates(&self.issuers) {
            return Err(LayoutError::DictionaryDuplicate);
        }
        self.shard.check()
    }

    /// True when this layout is `base` with names appended to its dictionaries (or `base`
    /// itself): what an update may change.
    pub fn extends(&self, base: &KeywordLayout) -> bool {
        self.msps.starts_with(&base.msps)
            && self.issuers.starts_with(&base.issuers)
            && Self {
                msps: base.msps.clone(),
                issuers: base.issuers.clone(),
                ..self.clone()
            } == *base
    }

    /// The candidate group `group` uses, `0..CANDIDATES`.
    pub fn choice(&self, group: GroupIndex) -> u32 {
        let g = group.0 as usize;
        self.choices
            .get(g / 4)
            .map_or(0, |byte| u32::from(byte >> ((g % 4) * 2)) & 3)
    }

    /// Makes group `group` use candidate `choice` (the builder's; below [`CANDIDATES`]).
    pub(crate) fn set_choice(&mut self, group: GroupIndex, choice: u32) {
        let g = group.0 as usize;
        if let Some(byte) = self.choices.get_mut(g / 4) {
            let shift = (g % 4) * 2;
            *byte = (*byte & !(3 << shift)) | (((choice & 3) as u8) << shift);
        }
    }

    /// The bucket of group `group`: its chosen candidate.
    pub fn bucket_of(&self, group: GroupIndex) -> BucketIndex {
        super::derive::candidate(&self.salt, group, self.choice(group), self.num_buckets)
    }

    /// The bucket, locator mask and record key of the CPI whose OPRF output is `y`.
    pub fn locate(&self, y: &OprfOutput) -> EntrySecrets {
        EntrySecrets::derive(y, self)
    }
}

/// Bytes of an index into a dictionary of `len` names: 1 up to 256 names, else 2.
pub(crate) fn index_width(len: usize) -> usize {
    if len <= 256 { 1 } else { 2 }
}

fn has_duplicates<T: Ord>(items: &[T]) -> bool {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0] == w[1])
}
