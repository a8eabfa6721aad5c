//! `pir-server`: the gRPC PIR server and the Discovery Provider's snapshot tooling.
//!
//! ```text
//! issuer-keygen ─▶ issuer.key/.pub
//! synth / your own signed mappings ─▶ mappings.jsonl ─build─▶ db.pirsnap ─serve─▶ gRPC pir.v1
//! ```

mod error;
mod keycache;
mod reload;
mod service;
pub mod tools;

pub use error::ServerError;
pub use reload::{Reloader, load_checked, serve_admin};
pub use service::{DiscoveryService, RunningServer, ServeOptions, serve};
