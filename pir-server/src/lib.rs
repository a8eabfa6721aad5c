//! `pir-server`: the gRPC PIR server. It serves snapshots that `pir-dp` (the Discovery
//! Provider's offline tooling) builds; the `pir-server` binary also offers that tooling's
//! subcommands, as thin wrappers over `pir-dp`.
//!
//! ```text
//! process        the `serve` process: checks its files (tls), binds, loads, SIGHUP reloads,
//! │              SIGTERM stops; tells systemd and the pid file (notify)
//! ├─▶ transport  Discovery (plaintext or TLS), health, reflection; RunningServer ─▶ readiness
//! ├─▶ http       GET /metrics, /healthz, /readyz ─▶ readiness, metrics
//! ├─▶ admin      Admin.Reload with the bearer token ─▶ reload (load, check, install) ─▶ service
//! │   (admin and transport ─▶ reflection: v1 and v1alpha, listing what each port serves)
//! │   (all three ─▶ listener: accept, connection cap, TLS (identity), bounded HTTP/2 or
//! │    HTTP/1, request body limits; process ─▶ descriptors: RLIMIT_NOFILE)
//! ├─▶ readiness  loading, ready, stopping: gRPC health and the probes ─▶ service
//! └─▶ service    pir.v1.Discovery: epoch, key, size and rate checks, then
//!     ├─▶ answerer   one thread answering the queued queries in batches over the database
//!     ├─▶ keycache   registered client keys, bounded by bytes; misses read the key store
//!     │   └─▶ keystore   registrations beyond the process: memory, embedded (redb), Redis
//!     ├─▶ limits     rate limiters: per key, per peer network, global
//!     ├─▶ peer       who a request is from: trusted proxies' headers, /64 (IPv6) networks
//!     └─▶ options (limits and their defaults), metrics (the registry ─▶ procstat: /proc/self)
//! selfsigned     `pir-server tls-selfsigned`: a TLS identity for test deployments
//! every file ─▶ error (ServerError, and the one mapping to a tonic::Status)
//! ```
//!
//! One job a file, named as in the picture; imports only go down it, so no two files import
//! each other. [`process`] is public: it is what `pir-server serve` runs, startable in-process.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod answerer;
mod descriptors;
mod directory;
mod error;
mod evaluator;
mod http;
mod identity;
mod keycache;
mod keystore;
mod limits;
mod listener;
mod metrics;
mod notify;
mod options;
mod peer;
pub mod process;
mod procstat;
mod readiness;
mod reflection;
mod reload;
mod selfsigned;
mod service;
mod tls;
mod transport;

pub use admin::{AdminToken, serve_admin};
pub use directory::{Directory, ManifestRef, ShardSelection};
pub use error::{BodyRefusal, MalformedRequest, QueryAuthError, RateLimited, ServerError};
pub use http::serve_metrics;
pub use identity::Identity;
/// The network type of [`ServeOptions::trusted_proxies`].
pub use ipnet::IpNet;
pub use keycache::estimated_cost as key_cache_cost;
pub use keystore::{KeyStore, KeyStoreError};
#[cfg(feature = "test-hooks")]
pub use options::TestHooks;
pub use options::{KeyStoreSpec, RateLimit, ServeOptions, TransportOptions};
pub use reload::{Reloader, load_checked};
pub use selfsigned::{SelfSigned, SelfSignedError, SelfSignedRequest, tls_selfsigned};
pub use service::DiscoveryService;
pub use tls::{CertProblem, PemProblem, TlsError, TlsIdentity};
pub use transport::{RunningServer, serve, serve_tls};
