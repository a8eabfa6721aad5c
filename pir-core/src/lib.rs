//! `pir-core`: private discovery lookups over Spiral PIR.
//!
//! A Discovery Provider builds a [`Snapshot`] from signed [`Mapping`]s; a PIR host answers
//! encrypted queries over the whole database with [`Snapshot::answer`]; an MSP's
//! [`LookupClient`] makes the query for one CPI and verifies the mappings that come back.
//!
//! ```text
//! DP:      mappings.jsonl --verify--> buckets --NTT--> Snapshot file
//! client:  cpi --layout--> bucket --encrypt--> query ───────────┐
//! server:                          Snapshot::answer(keys, query) │
//! client:  verified mappings <--verify-- bucket <--decrypt-- response
//! ```
//!
//! No async, no protobuf, no network here: those live in `pir-server` and `pir-client`.

mod b64;
mod bucket;
mod client;
mod cpi;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod json;
pub use json::DeltaLine;
mod layout;
mod mapping;
mod params;
mod snapshot;
mod spiral;

pub use client::{ClientKeys, KeyId, LookupClient, LookupResult, PendingLookup};
pub use cpi::{Cpi, MAX_CPI_LEN};
pub use error::{CoreError, Result};
pub use layout::{BucketIndex, KeywordLayout, LAYOUT_VERSION, Location, Tag};
pub use mapping::{
    ISSUER_ID_CONTEXT, ISSUER_SIG_CONTEXT, IssuerId, IssuerKey, MAPPING_FORMAT_VERSION,
    MAX_CONTEXT_LEN, MAX_PSI_LEN, Mapping, MappingFields, TrustStore, USER_SIG_CONTEXT,
    UserConsent, VerifiedMapping, canonical_body,
};
pub use params::{POLY_LEN, Preset, PresetOrigin, SchemeParams};
pub use snapshot::{
    BuildOptions, BuildReport, DeltaOp, DpSignature, LookupConfig, SNAPSHOT_FORMAT_VERSION,
    SNAPSHOT_MAGIC, Snapshot, SnapshotHeader, UpdateOptions, UpdateReport,
};
pub use spiral::{AnswerPhases, ClientSecret, MessageSizes, ServerKeys};

/// Re-exported so callers can make user keys without naming the crate.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
