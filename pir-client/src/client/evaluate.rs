//! The OPRF step of a lookup: blind the CPIs, have the evaluator (`Discovery/Evaluate`, on the
//! server or on the DP's evaluator) evaluate them, check its proof against the snapshot's OPRF
//! public key and unblind.
//!
//! ```text
//! blind(cpis) ──▶ Evaluate(key id, [blinded], mac) ──▶ [evaluated], proof
//!                   FAILED_PRECONDITION pir-reason: unknown-key ──▶ RegisterKeys, retry
//!             ◀── finalize: the proof checked against the layout's oprf_key, else refused
//! ```
//!
//! What is sent depends only on how many CPIs there are: each blinded element is uniformly
//! random to the evaluator, whatever the CPI.

use std::time::Duration;

use pir_core::{Cpi, LookupClient, oprf::Evaluated};
use pir_proto::{
    EvaluationIn,
    v1::{self, discovery_client::DiscoveryClient},
};
use tonic::transport::Channel;

use super::{
    lookup::{Heal, reason},
    rpc::{Wire, request, within},
};
use crate::error::{ClientError, Result};

/// What an Evaluate call came back with.
pub(super) enum Evaluations {
    /// The CPIs with their OPRF outputs, proven under the layout's key, in order.
    Done(Vec<Evaluated>),
    /// How to heal before trying again.
    Heal(Heal),
}

/// Evaluates `cpis` (at most the server's batch limit) in one request.
pub(super) async fn evaluate(
    grpc: &mut DiscoveryClient<Channel>,
    lookup: &LookupClient,
    cpis: &[Cpi],
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<Evaluations> {
    let blinded = lookup.blind(cpis, &mut rand::rngs::OsRng)?;
    let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
    // Charged to the keys, with their MAC; YPIR+SP has none: charged to the network only.
    let message = match lookup.keys() {
        Some(keys) => v1::EvaluateRequest::authenticated(keys, &elements),
        None => v1::EvaluateRequest::keyless(&elements),
    };
    wire.send(&message);
    let reply = within(
        "Evaluate",
        deadline,
        grpc.evaluate(request(message, deadline)),
    )
    .await?;
    let response = match reply {
        Ok(response) => response,
        Err(status) => {
            return match reason(&status) {
                Some(pir_proto::REASON_UNKNOWN_KEY) => Ok(Evaluations::Heal(Heal::Register(
                    ClientError::rpc("Evaluate", status),
                ))),
                // The server's engine is not the configuration's (it needs keys now): refresh.
                Some(pir_proto::REASON_STALE_EPOCH) => Ok(Evaluations::Heal(Heal::Refresh(
                    ClientError::rpc("Evaluate", status),
                ))),
                _ if status.code() == tonic::Code::Unimplemented => Err(ClientError::NoEvaluator {
                    message: status.message().to_owned(),
                }),
                _ => Err(ClientError::rpc("Evaluate", status)),
            };
        }
    };
    wire.receive(&response);
    let evaluation = EvaluationIn::parse(response, cpis.len())
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    match lookup.finalize(&blinded, evaluation.evaluation()) {
        Ok(evaluated) => Ok(Evaluations::Done(evaluated)),
        // Proven under another key than the snapshot's: the DP may have rotated its key and
        // this client's configuration be old. Refreshing it tells; a second failure is final.
        Err(source) => Ok(Evaluations::Heal(Heal::Refresh(ClientError::Evaluation {
            source,
        }))),
    }
}
