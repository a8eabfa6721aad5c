//! Where a CPI's record lives and how it is sealed: the layout (from the CPI's OPRF output and
//! the public choice table), the configuration a client needs, the compact record of a CPI and
//! the bucket codec.

pub(crate) mod bucket;
mod config;
pub mod derive;
pub(crate) mod entry;
mod layout;

pub use bucket::LOCATOR_BYTES;
pub use config::LookupConfig;
pub use derive::{EntrySecrets, candidate, group_of, shard_of};
pub(crate) use layout::index_width as layout_index_width;
pub use layout::{
    BucketIndex, CANDIDATES, GroupIndex, KeywordLayout, LAYOUT_VERSION, Location, MAX_DICTIONARY,
    MAX_GROUPS, MAX_ITEM_BYTES, RECORD_OVERHEAD, ShardPosition, choice_table_len,
};
