//! Where a CPI's entries live and how they are sealed: the layout (from the CPI's OPRF output),
//! the configuration a client needs, the sealed record of a CPI and the bucket codec.

pub(crate) mod bucket;
mod config;
pub mod derive;
pub(crate) mod entry;
mod layout;

pub use config::LookupConfig;
pub use derive::{EntrySecrets, shard_of};
pub use layout::{
    BucketIndex, KeywordLayout, LAYOUT_VERSION, Location, SLOT_BYTES_RANGE, SLOT_OVERHEAD,
    ShardPosition, Tag,
};
