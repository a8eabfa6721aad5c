//! The DP's oblivious PRF evaluator behind `Discovery/Evaluate`.
//!
//! A client locates a CPI only through an evaluation: each blinded element it sends is one CPI it
//! can then find and open in a snapshot. So evaluations are what enumeration costs, and they are
//! limited on their own, per registered key, per peer network and for the whole server, and
//! counted in their own metrics. The element itself tells the evaluator nothing (it is uniformly
//! random to it), and the work is CPU (a scalar multiplication per element and one proof per
//! batch), done off the async runtime.
//!
//! ```text
//! Evaluate: evaluator present? ─▶ shape (count, key id, mac, element lengths) ─▶ registered
//!           key ─▶ MAC (service.rs) ─▶ every element a valid encoding ─▶ peer network's,
//!           key's, then the server's tokens ─▶ off the runtime: evaluate, prove
//! ```

use std::{net::IpAddr, sync::Arc};

use pir_core::{KeyId, oprf::OprfKey};

use crate::{
    error::{RateLimited, ServerError},
    limits::{self, KeyedLimiter, take, take_direct},
    options::ServeOptions,
};

/// The evaluation limits: per key, per peer network and for the whole server.
pub(crate) struct EvaluationLimits {
    per_key: Option<KeyedLimiter<KeyId>>,
    per_peer: Option<KeyedLimiter<IpAddr>>,
    global: Option<governor::DefaultDirectRateLimiter>,
}

impl EvaluationLimits {
    fn new(opts: &ServeOptions) -> Self {
        let quota = |rate: Option<crate::options::RateLimit>| {
            rate.and_then(|r| limits::quota(r.burst, r.per_hour))
        };
        Self {
            per_key: quota(opts.per_key_evaluations).map(governor::RateLimiter::keyed),
            per_peer: quota(opts.per_peer_evaluations).map(governor::RateLimiter::keyed),
            global: opts
                .global_evaluations_per_second
                .and_then(limits::per_second)
                .map(governor::RateLimiter::direct),
        }
    }

    /// Charges `n` evaluations to the peer network, the key and the server, in that order.
    fn charge(
        &self,
        peer: Option<IpAddr>,
        key: Option<&KeyId>,
        n: usize,
    ) -> Result<(), ServerError> {
        if let Some(peer) = peer {
            take(&self.per_peer, &peer, n, RateLimited::EvaluationsOfPeer)?;
        }
        if let Some(key) = key {
            take(&self.per_key, key, n, RateLimited::EvaluationsOfKey)?;
        }
        take_direct(&self.global, n, RateLimited::GlobalEvaluations)
    }

    /// Forgets idle keys and networks.
    pub(crate) fn retain_recent(&self) {
        if let Some(x) = &self.per_key {
            x.retain_recent();
        }
        if let Some(x) = &self.per_peer {
            x.retain_recent();
        }
    }
}

/// The OPRF key and the limits on its use.
pub(crate) struct Evaluator {
    key: Arc<OprfKey>,
    limits: EvaluationLimits,
}

impl Evaluator {
    /// An evaluator for `key` with the limits of `opts`.
    pub(crate) fn new(key: OprfKey, opts: &ServeOptions) -> Self {
        Self {
            key: Arc::new(key),
            limits: EvaluationLimits::new(opts),
        }
    }

    /// The public key every evaluation is proven under.
    pub(crate) fn public(&self) -> pir_core::oprf::OprfPublicKey {
        self.key.public()
    }

    /// Charges the limits, then evaluates `blinded` (already shape-checked, from an
    /// authenticated key) off the runtime.
    pub(crate) async fn evaluate(
        &self,
        peer: Option<IpAddr>,
        key_id: Option<&KeyId>,
        blinded: Vec<[u8; pir_core::oprf::ELEMENT_BYTES]>,
    ) -> Result<pir_core::oprf::Evaluation, ServerError> {
        // Invalid elements are refused before any token is spent on them.
        pir_core::oprf::check_blinded(&blinded)?;
        self.limits.charge(peer, key_id, blinded.len())?;
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || key.evaluate_blinded(&mut rand::rngs::OsRng, &blinded))
            .await
            .map_err(|_| ServerError::Internal("an evaluation panicked or was cancelled".into()))?
            .map_err(ServerError::from)
    }

    /// Forgets idle limiter state.
    pub(crate) fn retain_recent(&self) {
        self.limits.retain_recent();
    }
}
