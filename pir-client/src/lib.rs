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
//!     ..ClientOptions::new(trust)
//! };
//! let mut client = PirClient::connect("http://127.0.0.1:50051", options).await?;
//! let outcome = client.lookup(&Cpi::parse("tel:+14155550100")?).await?;
//! for m in &outcome.result.mappings {
//!     println!("{} {:?}", m.fields.msp, m.fields.psi);
//! }
//! # Ok(()) }
//! ```
//!
//! The server computes over its whole database for every query and never learns which CPI was
//! looked up nor whether it was found; every mapping that comes back is verified against the
//! trusted issuer keys before it is returned. The secret key stays in this process and, if a
//! key file is configured, in that owner-only file.

// Outside tests, a panic must name the invariant that makes it impossible.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod address;
pub mod bench;
mod client;
mod error;
mod keyfile;
mod render;

pub use address::{AddressError, ServerAddress};
pub use client::{
    ClientOptions, DEFAULT_MAX_MESSAGE_BYTES, LookupOutcome, MAX_ATTEMPTS, PirClient, fetch_config,
};
pub use error::{CertificateProblem, ClientError, Result, code_name};
pub use keyfile::{KEY_FILE_MAGIC, KEY_FILE_VERSION, KeyFile, StoredKeys};
pub use render::{
    error_json, error_text, human_bytes, info_json, info_text, outcome_json, outcome_text,
    timestamp,
};

/// Re-exported: the validated server configuration [`PirClient::info`] returns, and the message
/// sizes it reports.
pub use pir_proto::{ConfigIn, ReportedSizes};
