//! Enrollment: the MSP operator's side of `pir.issuer.v1.Issuer`, the ID prover that proves a
//! user holds a CPI and issues the signed mapping to the user's MSP.
//!
//! ```text
//!   user               MSP (this module)                       ID prover
//!                      ProverClient::start ── StartEnrollment ──▶ sends a one-time code
//!                        (signed with the MspKey)                  to the CPI
//!                      ◀── Started: enrollment id, window, issuer, the bytes the user signs
//!                          (checked: they describe the mapping asked for)
//!   code (+ consent) ─▶ ProverClient::complete ─ CompleteEnrollment ─▶ checks the code
//!                      ◀── the signed mapping, checked field by field against the Started
//!                      ProverClient::revoke ─── RevokeMapping ───▶ a removal in the DP's feed
//! ```
//!
//! Every request carries the MSP's Ed25519 signature over its fields (pir-core
//! [`MspRequest`](pir_core::identity::MspRequest)) at the current time; the prover holds the
//! MSP's public key under its domain. Nothing the prover answers is taken on trust: a start
//! whose CPI or user-signed bytes are not the request's, and an issued mapping whose CPI, MSP,
//! PSI, context, window, issuer key id or user key is not the start's, are refused
//! ([`EnrollError::Mismatch`]), so that a hostile prover can make neither the MSP nor its user
//! accept another mapping.
//!
//! A [`Started`] is saved between start and completion as a small JSON file
//! ([`Started::save`]); key files are written by [`msp_keygen`] and [`user_keygen`].

mod error;
mod files;
mod prover;
mod started;

pub use error::{EnrollError, FileProblem, MappingField, ProtocolProblem, UserKeyProblem};
pub use files::{
    append_mapping, check_output_dir, msp_keygen, public_key_path, read_msp_key, read_user_key,
    user_keygen,
};
pub use prover::{DEFAULT_CONNECT_TIMEOUT, ProverClient, ProverOptions};
pub use started::{ENROLLMENT_FILE_VERSION, Started};
