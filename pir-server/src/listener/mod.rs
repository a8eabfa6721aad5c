//! Every listener's connections, bounded: the accept loop, TLS, and hyper's HTTP/2 (gRPC) or
//! HTTP/1 (metrics, probes) connections, driven here rather than by tonic's server so that each
//! limit of [`TransportOptions`](crate::TransportOptions) holds on every port.
//!
//! ```text
//! accept ── a connection slot (global cap; at the cap: wait, warn) ── EMFILE/ENFILE: back off
//!   │       50 ms .. 1.6 s, warn (at most every 10 s), never spin
//!   ▼
//! TLS handshake (≤ tls_handshake_timeout) ─▶ HTTP/2: MAX_CONCURRENT_STREAMS, reset caps,
//!   keepalive PINGs; GOAWAY once idle (no open stream for idle_timeout), too old
//!   (max_connection_age) or shutting down; closed anyway connection_grace later
//!   ▼ each request
//! body: at most the method's limit (Policy), whole within request_body_timeout, its bytes
//!   charged to the global in-flight budget until answered ─ else refused, bytes released
//! ```
//!
//! One job a file, each using only the ones before it: `policy.rs` (what a listener speaks and
//! allows, and the limits all listeners share), `body.rs` (request bodies held to their limits,
//! and the response refusing one), `conn.rs` (one connection: TLS, hyper, GOAWAY, each request's
//! body limited and its stream counted), `accept.rs` (the accept loop and the connection cap).

mod accept;
mod body;
mod conn;
mod policy;

pub(crate) use accept::serve;
pub(crate) use policy::{Fixed, Limits, Policy, Protocol};
