//! One lookup's query: what came back (its answer, or how to heal before the next attempt),
//! and its decoding, which waits until every query of the batch has gone out.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pir_core::{LookupClient, LookupResult, lookup::PendingLookup};
use pir_proto::{
    AnswerError, AnswerIn, ConfigIn, REASON_KEY, REASON_STALE_EPOCH, REASON_UNKNOWN_KEY, v1,
};

use super::rpc::Wire;
use crate::error::{ClientError, Result};

/// Most Query calls one lookup makes (the first try plus healing retries).
pub const MAX_ATTEMPTS: u32 = 3;

/// One finished lookup and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupOutcome {
    /// The verified mappings (empty when the CPI is not found).
    pub result: LookupResult,
    /// Bytes sent for this lookup: every protobuf message of every RPC it made (healing
    /// included), plus 5 bytes of gRPC framing each. HTTP/2 and TLS overhead are not counted.
    pub bytes_sent: u64,
    /// Bytes received for this lookup, counted the same way.
    pub bytes_received: u64,
    /// Wall time of the lookup's RPCs and of its decoding, milliseconds.
    pub millis: f64,
}

/// What to do after a failed attempt, and the error to report if no attempt is left.
pub(super) enum Heal {
    Register(ClientError),
    Refresh(ClientError),
}

/// What a Query call came back with: the one answer, or how to heal before trying again.
pub(super) enum Reply {
    Answer(Vec<u8>),
    Heal(Heal),
}

/// Reads a Query call's outcome (counting the response's bytes): its one answer, a refusal to
/// heal from (an unknown key; another epoch or snapshot), or an error that ends the lookup.
pub(super) fn read_reply(
    reply: std::result::Result<v1::QueryResponse, tonic::Status>,
    config: &ConfigIn,
    wire: &mut Wire,
) -> Result<Reply> {
    Ok(match reply {
        Ok(response) => {
            wire.receive(&response);
            match AnswerIn::<1>::parse(response, config) {
                Ok(answer) => {
                    let [answer] = answer.into_answers();
                    Reply::Answer(answer)
                }
                Err(e @ (AnswerError::Epoch { .. } | AnswerError::Snapshot { .. })) => {
                    Reply::Heal(Heal::Refresh(ClientError::Protocol(e.to_string())))
                }
                Err(e @ AnswerError::Count { .. }) => {
                    return Err(ClientError::Protocol(e.to_string()));
                }
            }
        }
        Err(status) => match reason(&status) {
            Some(REASON_UNKNOWN_KEY) => {
                Reply::Heal(Heal::Register(ClientError::rpc("Query", status)))
            }
            Some(REASON_STALE_EPOCH) => {
                Reply::Heal(Heal::Refresh(ClientError::rpc("Query", status)))
            }
            _ => return Err(ClientError::rpc("Query", status)),
        },
    })
}

/// The `pir-reason` of a FAILED_PRECONDITION status, if any.
pub(super) fn reason(status: &tonic::Status) -> Option<&str> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    status.metadata().get(REASON_KEY)?.to_str().ok()
}

/// A query sent and answered, not yet decrypted: decoding waits until every query of the batch
/// is sent. Holds the lookup client the query was made with, so a refresh later in the batch
/// does not change how it decodes.
pub(super) struct Answered {
    pub(super) decoder: Arc<LookupClient>,
    pub(super) pending: PendingLookup,
    pub(super) answer: Vec<u8>,
    pub(super) wire: Wire,
    pub(super) elapsed: Duration,
}

impl Answered {
    pub(super) fn decode(self) -> Result<LookupOutcome> {
        let started = Instant::now();
        let cpi = self.pending.cpi().to_string();
        let result = self
            .decoder
            .decode(self.pending, &self.answer, pir_core::unix_now())
            .map_err(|source| ClientError::Lookup { cpi, source })?;
        Ok(LookupOutcome {
            result,
            bytes_sent: self.wire.sent,
            bytes_received: self.wire.received,
            millis: (self.elapsed + started.elapsed()).as_secs_f64() * 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lookup` reports a response that does not answer its query with the messages it always
    /// has: they are what a user sees of a misbehaving server.
    #[test]
    fn answer_refusals_keep_their_messages() {
        let epoch = AnswerError::Epoch { got: 3, asked: 2 };
        assert_eq!(
            ClientError::Protocol(epoch.to_string()).to_string(),
            "protocol violation by the server: answer for epoch 3, asked for epoch 2"
        );
        for (got, shown) in [(0, "0 answers to 1 query"), (2, "2 answers to 1 query")] {
            let count = AnswerError::Count { got, sent: 1 };
            assert_eq!(
                ClientError::Protocol(count.to_string()).to_string(),
                format!("protocol violation by the server: {shown}")
            );
        }
    }
}
