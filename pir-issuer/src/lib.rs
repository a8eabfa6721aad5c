//! `pir-issuer`: the ID prover. It proves that a user holds a CPI (a phone number or an email
//! address) by sending a one-time code through the CPI's own channel, which the user gives to
//! their MSP and the MSP relays back (the three-way handshake); it then issues the signed
//! mapping binding the CPI to that MSP, and appends it to the delta feed the DP's `update`
//! reads.

// Outside tests, a panic must name the invariant that makes it impossible.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
mod code;
pub mod error;
pub mod feed;
pub mod policy;
pub mod sender;
pub mod server;
mod service;
mod store;

pub use auth::{MspRegistry, OperatorToken};
pub use error::IssuerError;
pub use feed::Feed;
pub use policy::Policy;
pub use server::{IssuerConfig, RunningIssuer, StartError, SweepReport, export, start};
pub use store::StoreError;
