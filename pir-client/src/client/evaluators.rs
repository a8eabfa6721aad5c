//! The DP's evaluators ([`ClientOptions::evaluators`]): evaluations go to one of them, and
//! move to the next when it cannot be reached, answers UNAVAILABLE, passes the deadline,
//! answers no evaluations or fails to register the keys, at most
//! [`ClientOptions::shard_attempts`] attempts per request, each a fresh blinding.
//!
//! ```text
//! evaluate(cpis): the current evaluator (opened when first used: GetConfig, its snapshot's
//!                 OPRF key must be ours, else refused: a misconfiguration, not an outage)
//!   Evaluate(blind(cpis)) ──▶ done
//!     unknown-key ──▶ RegisterKeys there (failed: the next evaluator), again (MAX_ATTEMPTS)
//!     unavailable, no evaluations ──▶ the next evaluator, blinded afresh (shard_attempts)
//! ```
//!
//! The evaluator that answered stays the current one: evaluations do not spread, so that
//! one evaluator sees a client's evaluations unless it fails.

use pir_core::{Cpi, LookupClient, oprf::Evaluated, oprf::OprfPublicKey};
use pir_proto::{ConfigIn, v1::discovery_client::DiscoveryClient};
use tonic::transport::Channel;

use super::{
    connect::open,
    evaluate::{Evaluations, evaluate},
    keys::{self, Registrations},
    lookup::{Heal, MAX_ATTEMPTS},
    options::ClientOptions,
    rpc::{Wire, unavailable},
};
use crate::error::{ClientError, Result};

/// What an evaluation with failover came back with.
pub(super) enum Evaluation {
    /// The CPIs with their OPRF outputs, proven under the expected key, in order.
    Done(Vec<Evaluated>),
    /// Proven under another key than the snapshot's: the caller's configuration may be old.
    Refresh(ClientError),
}

/// One evaluator: its URL, and once used its channel and configuration.
#[derive(Debug)]
struct Evaluator {
    url: String,
    open: Option<(DiscoveryClient<Channel>, ConfigIn)>,
}

/// The evaluators given, in order, and the one evaluations go to.
#[derive(Debug)]
pub(super) struct Evaluators {
    list: Vec<Evaluator>,
    current: usize,
}

impl Evaluators {
    /// The evaluators `options` names; `None` when it names none (the server evaluates).
    pub(super) fn of(options: &ClientOptions) -> Option<Self> {
        let list: Vec<Evaluator> = options
            .evaluators()
            .into_iter()
            .map(|url| Evaluator { url, open: None })
            .collect();
        (!list.is_empty()).then_some(Self { list, current: 0 })
    }

    /// At connect: opens the evaluators in order until one answers (checking its OPRF key
    /// against `ours`) and registers the keys there. Every one failing is
    /// [`ClientError::EvaluatorsUnavailable`]; one keyed by another OPRF key is refused.
    pub(super) async fn connect(
        &mut self,
        lookup: &LookupClient,
        ours: &OprfPublicKey,
        options: &ClientOptions,
        registrations: &mut Registrations,
        wire: &mut Wire,
    ) -> Result<()> {
        let mut tried = Vec::new();
        for _ in 0..self.list.len() {
            let i = self.current;
            let url = self.list[i].url.clone();
            let outcome = match self.ready(i, ours, options, wire).await {
                Ok((mut grpc, config)) => match lookup.keys() {
                    Some(keys) => {
                        let deadline = options.request_timeout;
                        keys::register(&mut grpc, keys, &config, deadline, wire)
                            .await
                            .map(|lease| registrations.registered(&url, &grpc, lease))
                    }
                    // Nothing to register: evaluations without keys.
                    None => Ok(()),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e @ ClientError::BadConfig(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(%url, error = %e, "evaluator left for the next");
                    tried.push(format!("{url}: {e}"));
                    self.list[i].open = None;
                    self.current = (i + 1) % self.list.len();
                }
            }
        }
        Err(ClientError::EvaluatorsUnavailable { tried })
    }

    /// Most elements one Evaluate request may carry: the smallest limit of the evaluators
    /// opened so far (`None` before any is).
    pub(super) fn batch(&self) -> Option<u32> {
        self.list
            .iter()
            .filter_map(|e| e.open.as_ref().map(|(_, c)| c.max_queries_per_request()))
            .min()
    }

    /// Evaluates `cpis` (at most [`Self::batch`]) at the current evaluator, moving to the next
    /// one when it fails (see the module's documentation), each attempt blinded afresh.
    pub(super) async fn evaluate(
        &mut self,
        lookup: &LookupClient,
        cpis: &[Cpi],
        ours: &OprfPublicKey,
        options: &ClientOptions,
        registrations: &mut Registrations,
        wire: &mut Wire,
    ) -> Result<Evaluation> {
        let deadline = options.request_timeout;
        let attempts = options.shard_attempts.max(1) as usize;
        let mut tried = Vec::new();
        let mut registered = 0;
        loop {
            if tried.len() >= attempts {
                return Err(ClientError::EvaluatorsUnavailable { tried });
            }
            let i = self.current;
            let url = self.list[i].url.clone();
            let failed = match self.ready(i, ours, options, wire).await {
                Err(e @ ClientError::BadConfig(_)) => return Err(e),
                Err(e) => e,
                // `evaluate` blinds the CPIs again on every call: no retry reuses elements.
                Ok((mut grpc, config)) => match evaluate(&mut grpc, lookup, cpis, deadline, wire)
                    .await
                {
                    Ok(Evaluations::Done(evaluated)) => {
                        registrations.accepted(&url, &grpc);
                        return Ok(Evaluation::Done(evaluated));
                    }
                    Ok(Evaluations::Heal(Heal::Refresh(e))) => return Ok(Evaluation::Refresh(e)),
                    Ok(Evaluations::Heal(Heal::Register(e))) => {
                        registered += 1;
                        if registered >= MAX_ATTEMPTS {
                            return Err(e);
                        }
                        tracing::info!(%url, "evaluator does not know our keys: registering");
                        let Some(ours) = lookup.keys() else {
                            return Err(e);
                        };
                        match keys::register(&mut grpc, ours, &config, deadline, wire).await {
                            Ok(lease) => {
                                registrations.registered(&url, &grpc, lease);
                                continue;
                            }
                            Err(e) => e,
                        }
                    }
                    Err(e) if unavailable(&e) || matches!(e, ClientError::NoEvaluator { .. }) => e,
                    Err(e) => return Err(e),
                },
            };
            tracing::info!(%url, error = %failed, "evaluator left for the next");
            tried.push(format!("{url}: {failed}"));
            self.list[i].open = None;
            self.current = (i + 1) % self.list.len();
        }
    }

    /// Evaluator `i`'s channel and configuration, opened and checked when not yet.
    async fn ready(
        &mut self,
        i: usize,
        ours: &OprfPublicKey,
        options: &ClientOptions,
        wire: &mut Wire,
    ) -> Result<(DiscoveryClient<Channel>, ConfigIn)> {
        let evaluator = &mut self.list[i];
        if let Some(open) = &evaluator.open {
            return Ok(open.clone());
        }
        let (grpc, config) = open(&evaluator.url, options, None, wire).await?;
        let theirs = config.lookup().layout().oprf_key;
        if theirs != *ours {
            return Err(ClientError::BadConfig(format!(
                "the evaluator {} serves a snapshot keyed by OPRF key {theirs}, the snapshot \
                 looked up is keyed by {ours}: they are not the same DP's",
                evaluator.url
            )));
        }
        evaluator.open = Some((grpc.clone(), config.clone()));
        Ok((grpc, config))
    }
}
