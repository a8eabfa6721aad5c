//! `pir-server`: the gRPC PIR server and the Discovery Provider's snapshot tooling.
//!
//! ```text
//! issuer-keygen ─▶ issuer.key/.pub
//! synth / your own signed mappings ─▶ mappings.jsonl ─build─▶ db.pirsnap ─serve─▶ gRPC pir.v1
//! ```

mod admin;
mod answerer;
mod error;
mod http;
mod keycache;
mod limits;
mod metrics;
mod options;
pub mod process;
mod reload;
mod service;
mod transport;

pub use admin::{AdminToken, serve_admin};
pub use error::ServerError;
pub use http::serve_metrics;
#[cfg(feature = "test-hooks")]
pub use options::TestHooks;
pub use options::{RateLimit, ServeOptions};
pub use reload::{Reloader, load_checked};
pub use service::DiscoveryService;
/// TLS identity (certificate chain and private key, PEM) for [`serve_tls`].
pub use tonic::transport::Identity;
pub use transport::{RunningServer, serve, serve_tls};
