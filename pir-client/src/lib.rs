//! `pir-client`: private discovery lookups against a `pir.v1` gRPC server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pir_client::ClientError> {
//! use pir_client::{ClientOptions, PirClient};
//! use pir_core::{Cpi, TrustStore};
//!
//! let trust = TrustStore::from_file("issuer.pub".as_ref())?;
//! let options = ClientOptions {
//!     key_file: Some("client.keys".into()),
//!     dp_keys: Some(pir_core::DpKeys::from_file("dp.pub".as_ref())?),
//!     ..ClientOptions::new(trust)
//! };
//! let mut client = PirClient::connect("https://discovery.example:50051", options).await?;
//! let cpis = [Cpi::parse("tel:+14155550100")?, Cpi::parse("mailto:bob@example.org")?];
//! for outcome in client.lookup_many(&cpis).await {
//!     match outcome {
//!         Ok(outcome) => {
//!             for m in &outcome.result.mappings {
//!                 println!("{} {:?}", m.fields.msp, m.fields.psi);
//!             }
//!         }
//!         Err(e) => eprintln!("{e}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The server computes over its whole database for every query and never learns which CPI was
//! looked up nor whether it was found; every mapping that comes back is verified against the
//! trusted issuer keys before it is returned. The secret key stays in this process and, if a
//! key file is configured, in that owner-only file.
//!
//! A directory split into shards is looked up with [`ShardedClient`] (what the CLI uses): it
//! routes each CPI to its shard's replicas, by the DP-signed manifest, in the privacy mode of
//! [`ClientOptions::shard_privacy`]; against an unsharded server it is a [`PirClient`].
//!
//! # Rules for callers
//!
//! - **Send every query of a batch, whatever the answers say.** A malicious server can plant an
//!   entry that fails verification under the tag of a CPI it wants to watch for. If a caller
//!   stops, retries or sends anything differently because a lookup failed to verify, the
//!   server learns that the CPI was asked. [`PirClient::lookup_many`] keeps the rule within a
//!   batch: it sends and receives every query before it decrypts any answer, and reports each
//!   CPI's failure on its own. Look CPIs up together with it rather than with
//!   [`PirClient::lookup`] in a loop, and act on a batch's results only once it is complete.
//! - **Give the DP's public key** ([`ClientOptions::dp_keys`], `--dp-pub`) and a key file:
//!   the client then checks the DP's signature on the snapshot header the server sends, that
//!   the configuration is the one it describes, and refuses an epoch older than the newest it
//!   verified (remembered in the key file) or another snapshot with that epoch. Without it, a
//!   server can serve an old snapshot, or one the DP never built; mappings are still verified
//!   against the issuer keys, so it cannot forge one, only omit or serve stale ones.
//! - **Defaults that hold against a hostile server**: every RPC has a deadline
//!   ([`DEFAULT_REQUEST_TIMEOUT`]); plaintext `http://` only to a loopback address (a bare
//!   `HOST:PORT` is TLS) unless [`ClientOptions::insecure_plaintext`]; only pir-core's vetted
//!   parameter presets, and none whose messages exceed [`ClientOptions::max_message_bytes`],
//!   unless [`ClientOptions::allow_custom_params`] (tests, research).

// Outside tests, a panic must name the invariant that makes it impossible.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod address;
pub mod bench;
mod client;
pub mod enroll;
mod error;
mod keyfile;
mod render;
mod shard_map;

pub use address::{AddressError, ServerAddress};
pub use client::{
    ClientOptions, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHARD_ATTEMPTS,
    LookupOutcome, MAX_ATTEMPTS, PirClient, ShardPrivacy, ShardedClient, fetch_config,
};
pub use error::{
    CertificateProblem, ClientError, ParamsRefusal, Result, ShardRefusal, SnapshotRefusal,
    code_name,
};
pub use keyfile::{
    KEY_FILE_MAGIC, KEY_FILE_VERSION, KeyFile, KeyFileContents, SeenSnapshot, StoredKeys,
};
pub use render::{
    error_json, error_text, human_bytes, info_json, info_text, outcome_json, outcome_text,
    timestamp,
};
pub use shard_map::{SHARD_PLACEHOLDER, ShardMap, ShardMapError};

/// Re-exported: the validated server configuration [`PirClient::info`] returns, and the message
/// sizes it reports.
pub use pir_proto::{ConfigIn, ReportedSizes};
