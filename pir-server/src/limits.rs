//! Rate limits: governor's keyed token buckets, per registered key and per peer address.
//!
//! Each limiter keeps a bucket per key or address it has seen; [`Limiters::retain_recent`]
//! forgets the idle ones so the state stays bounded.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    Quota,
    clock::{Clock, DefaultClock},
};
use pir_core::KeyId;

use crate::error::{RateLimited, ServerError};

type KeyedLimiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// A bucket of `burst` tokens refilled at `per_hour` (at least 1); `None` when `burst` is 0.
pub(crate) fn quota(burst: u32, per_hour: u32) -> Option<Quota> {
    let burst = NonZeroU32::new(burst)?;
    let period = Duration::from_secs_f64(3600.0 / f64::from(per_hour.max(1)));
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// The server's three limiters; `None` is unlimited.
pub(crate) struct Limiters {
    per_key: Option<KeyedLimiter<KeyId>>,
    per_peer: Option<KeyedLimiter<IpAddr>>,
    registrations: Option<KeyedLimiter<IpAddr>>,
}

impl Limiters {
    /// PIR queries per registered key and per peer address, key registrations per peer address.
    pub(crate) fn new(
        per_key: Option<Quota>,
        per_peer: Option<Quota>,
        registrations: Option<Quota>,
    ) -> Self {
        Self {
            per_key: per_key.map(governor::RateLimiter::keyed),
            per_peer: per_peer.map(governor::RateLimiter::keyed),
            registrations: registrations.map(governor::RateLimiter::keyed),
        }
    }

    /// Takes `n` query tokens of registered key `id`.
    pub(crate) fn queries_of_key(&self, id: &KeyId, n: usize) -> Result<(), ServerError> {
        take(&self.per_key, id, n, RateLimited::Key)
    }

    /// Takes `n` query tokens of peer address `peer`.
    pub(crate) fn queries_of_peer(&self, peer: &IpAddr, n: usize) -> Result<(), ServerError> {
        take(&self.per_peer, peer, n, RateLimited::Peer)
    }

    /// Takes one registration token of peer address `peer`.
    pub(crate) fn registration_of_peer(&self, peer: &IpAddr) -> Result<(), ServerError> {
        take(&self.registrations, peer, 1, RateLimited::Registrations)
    }

    /// Drops the state of idle keys and peers.
    pub(crate) fn retain_recent(&self) {
        if let Some(x) = &self.per_key {
            x.retain_recent();
        }
        if let Some(x) = &self.per_peer {
            x.retain_recent();
        }
        if let Some(x) = &self.registrations {
            x.retain_recent();
        }
    }
}

/// Takes `n` tokens for `key`, or says who is over their rate.
fn take<K: Clone + Eq + std::hash::Hash>(
    limiter: &Option<KeyedLimiter<K>>,
    key: &K,
    n: usize,
    who: RateLimited,
) -> Result<(), ServerError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    let n = std::num::NonZeroU32::new(n.try_into().unwrap_or(u32::MAX))
        .unwrap_or(std::num::NonZeroU32::MIN);
    match limiter.check_key_n(key, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(ServerError::RateLimited {
            who,
            retry_after: Some(not_until.wait_time_from(DefaultClock::default().now())),
        }),
        // More tokens than the bucket holds: no wait lets this request through.
        Err(_) => Err(ServerError::RateLimited {
            who,
            retry_after: None,
        }),
    }
}
