//! Conversions between wire types and `pir-core` types.
//!
//! A message that needs nothing but itself to check converts with `TryFrom`. One whose checks
//! need what the receiver knows (the server's batch limit, the served parameters' key size, the
//! request an answer answers) converts with `parse(message, what it is checked against)`, so
//! each check still happens once, in the one constructor of a type that carries the result.
//!
//! ```text
//! client                                        server
//! ConfigIn    ◀── GetConfigResponse ◀────────── GetConfigResponse::for_snapshot
//!             ─── RegisterKeysRequest ────────▶ RegisterKeysIn::parse(req, key sizes)
//!             ─── EvaluateRequest ────────────▶ EvaluateIn::parse(req, max elements)
//! EvaluationIn::parse(resp, sent) ◀── EvaluateResponse ◀── From<Evaluation>
//!             ─── QueryRequest ───────────────▶ QueryIn::parse(req, max queries)
//! AnswerIn::<N>::parse(resp, epoch) ◀── QueryResponse
//!             ─── RenewKeysRequest ───────────▶ RenewKeysIn::try_from(req)
//! Expiry      ◀── Register/RenewKeysResponse ◀── ::registered(id, expiry), ::until(expiry)
//! ```

//!
//! One file a side: `client.rs` (what a client takes from the wire and the requests it builds),
//! `server.rs` (what a server takes from the wire and the responses it builds), `params.rs`
//! (the scheme parameters and the keyword layout, both ways, which both sides send), and
//! `evaluate.rs` (`Evaluate`, both ways: the one exchange the evaluator and the PIR host may
//! answer from different processes), and `registration.rs` (a registration's expiry and
//! `RenewKeys`, both ways).

mod client;
mod evaluate;
mod params;
mod registration;
mod server;

pub use client::{AnswerError, AnswerIn, ConfigIn, ConvertError, ReportedSizes};
pub use evaluate::{EvaluateError, EvaluateIn, EvaluationError, EvaluationIn};
pub use registration::{Expiry, RenewKeysError, RenewKeysIn};
pub use server::{QueryError, QueryIn, RegisterKeysError, RegisterKeysIn};
