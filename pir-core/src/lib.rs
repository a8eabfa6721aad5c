//! `pir-core`: private discovery lookups over Spiral PIR.
//!
//! A Discovery Provider builds a [`Snapshot`] from signed [`Mapping`]s; a PIR host answers
//! encrypted queries over the whole [`Database`]; an MSP's [`LookupClient`] makes the query for
//! one CPI and verifies the mappings that come back.
//!
//! ```text
//! DP:      mappings.jsonl --verify--> buckets --NTT--> Snapshot file
//! client:  cpi --layout--> bucket --encrypt--> query ───────────┐
//! server:                          Database::answer(keys, query) │
//! client:  verified mappings <--verify-- bucket <--decrypt-- response
//! ```
//!
//! The crate is laid out by role; the root re-exports the paved-path types:
//!
//! | module | what |
//! | --- | --- |
//! | [`identity`] | CPIs, signed mappings, key roles, the trust store, JSON Lines |
//! | [`keyword`] | which bucket holds a CPI, the client's configuration, the bucket codec |
//! | [`pir`] | the scheme seam: the only module that names `spiral_rs` |
//! | [`snapshot`] | build, file format, delta updates, the DP's signature |
//! | [`lookup`] | the client's flow: query, decode, verify |
//! | [`query_auth`] | the proof of possession on queries: the mac key and the MAC |
//!
//! No async, no protobuf, no network here: those live in `pir-server` and `pir-client`.

// Outside tests, a panic must name the invariant that makes it impossible.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod bytes;
pub mod error;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod human;
pub mod identity;
pub mod keyword;
pub mod lookup;
pub mod oprf;
pub mod pir;
pub mod query_auth;
pub mod snapshot;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use error::{CoreError, ErrorClass, Result};
pub use identity::{
    Cpi, DpKey, DpKeys, IssuerKey, Mapping, MappingFields, TrustStore, VerifiedMapping,
};
pub use keyword::{KeywordLayout, LookupConfig};
pub use lookup::{ClientKeys, KeyId, LookupClient, LookupResult, PendingLookup};
pub use pir::{
    ClientSecret, Database, Engine, EvalKeys, MessageSizes, Scheme, SchemeFields, SchemeParams,
};
pub use query_auth::QueryMacKey;
pub use snapshot::{BuildOptions, Snapshot, SnapshotHeader, UpdateOptions};

/// Re-exported so callers can make user keys without naming the crate.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
