//! Where a CPI's entries live: the keyword-to-bucket layout, the configuration a client needs,
//! and the bucket codec.

pub(crate) mod bucket;
mod config;
pub mod derive;
mod layout;

pub use config::LookupConfig;
pub use derive::{EntrySecrets, shard_of};
pub use layout::{BucketIndex, KeywordLayout, LAYOUT_VERSION, Location, Tag};
