//! Rate limits: governor's token buckets, per registered key, per peer network, and for the
//! whole server.
//!
//! Each keyed limiter keeps a bucket per key or network it has seen; [`Limiters::retain_recent`]
//! forgets the idle ones so the state stays bounded. Per-peer buckets are keyed on the peer's
//! network (`peer.rs`), not its exact address. The global limits bound what many peers together
//! can do: key registrations per second (each costs CPU and tens of MB), and evictions from the
//! key cache per minute, so that no number of addresses can flush every registered client at
//! once: once the eviction budget is spent, a registration that needs room is refused and the
//! clients already registered keep working.
//!
//! With a key store that keeps shared counters (Redis), the two registration limits are counted
//! there instead, for every replica together ([`Limiters::registration_tokens`]); when it
//! cannot be asked, registrations are refused (fail closed). Query, evaluation and eviction
//! limits stay per process: they guard this process's CPU and key cache.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    Quota,
    clock::{Clock, DefaultClock},
};
use pir_core::KeyId;

use crate::{
    error::{RateLimited, ServerError},
    keystore::{KeyStore, SharedRate, Taken},
    options::RateLimit,
};

pub(crate) type KeyedLimiter<K> = governor::DefaultKeyedRateLimiter<K>;
type DirectLimiter = governor::DefaultDirectRateLimiter;

/// A bucket of `burst` tokens refilled at `per_hour` (at least 1); `None` when `burst` is 0.
pub(crate) fn quota(burst: u32, per_hour: u32) -> Option<Quota> {
    let burst = NonZeroU32::new(burst)?;
    let period = Duration::from_secs_f64(3600.0 / f64::from(per_hour.max(1)));
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// `n` a second, a second's worth at once; `None` when `n` is 0.
pub(crate) fn per_second(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_second)
}

/// `n` a minute, a minute's worth at once; `None` when `n` is 0.
pub(crate) fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

/// The server's limiters; `None` is unlimited.
pub(crate) struct Limiters {
    per_key: Option<KeyedLimiter<KeyId>>,
    per_peer: Option<KeyedLimiter<IpAddr>>,
    registrations: Option<KeyedLimiter<IpAddr>>,
    global_registrations: Option<DirectLimiter>,
    evictions: Option<DirectLimiter>,
    /// The registration limits as a shared store counts them.
    shared_registrations: Option<SharedRate>,
    shared_global_registrations: Option<SharedRate>,
}

/// The shared bucket of [`quota`]'s: a token every `3600 / per_hour` seconds, `burst` at once.
pub(crate) fn shared_quota(rate: RateLimit) -> Option<SharedRate> {
    (rate.burst > 0).then(|| SharedRate {
        interval: Duration::from_secs_f64(3600.0 / f64::from(rate.per_hour.max(1))),
        burst: rate.burst,
    })
}

/// The shared bucket of [`per_second`]'s.
pub(crate) fn shared_per_second(n: u32) -> Option<SharedRate> {
    (n > 0).then(|| SharedRate {
        interval: Duration::from_secs_f64(1.0 / f64::from(n)),
        burst: n,
    })
}

/// The quotas of [`Limiters::new`]; `None` is unlimited.
pub(crate) struct Quotas {
    /// PIR queries per registered key.
    pub(crate) per_key: Option<Quota>,
    /// PIR queries per peer network.
    pub(crate) per_peer: Option<Quota>,
    /// Key registrations per peer network.
    pub(crate) registrations: Option<Quota>,
    /// Key registrations, all peers together.
    pub(crate) global_registrations: Option<Quota>,
    /// Evictions from the key cache.
    pub(crate) evictions: Option<Quota>,
    /// Key registrations per peer network, when a shared store counts them.
    pub(crate) shared_registrations: Option<SharedRate>,
    /// Key registrations of all peers, when a shared store counts them.
    pub(crate) shared_global_registrations: Option<SharedRate>,
}

impl Limiters {
    pub(crate) fn new(q: Quotas) -> Self {
        Self {
            per_key: q.per_key.map(governor::RateLimiter::keyed),
            per_peer: q.per_peer.map(governor::RateLimiter::keyed),
            registrations: q.registrations.map(governor::RateLimiter::keyed),
            global_registrations: q.global_registrations.map(governor::RateLimiter::direct),
            evictions: q.evictions.map(governor::RateLimiter::direct),
            shared_registrations: q.shared_registrations,
            shared_global_registrations: q.shared_global_registrations,
        }
    }

    /// Takes a registration token of peer network `peer` (when known), then one of the
    /// server's: in `store` when it keeps shared counters (for every replica together), else
    /// in this process. A store that cannot be asked refuses the registration.
    pub(crate) async fn registration_tokens(
        &self,
        store: &KeyStore,
        peer: Option<IpAddr>,
    ) -> Result<(), ServerError> {
        let shared = |name: String, rate: Option<SharedRate>, who| async move {
            let Some(rate) = rate else {
                return Ok(Some(()));
            };
            match store
                .take(&name, rate)
                .await
                .map_err(ServerError::KeyStore)?
            {
                None => Ok(None),
                Some(Taken::Granted) => Ok(Some(())),
                Some(Taken::Refused(wait)) => Err(ServerError::RateLimited {
                    who,
                    retry_after: Some(wait),
                }),
            }
        };
        if let Some(peer) = peer {
            let name = format!("registrations:peer:{peer}");
            if shared(name, self.shared_registrations, RateLimited::Registrations)
                .await?
                .is_none()
            {
                self.registration_of_peer(&peer)?;
            }
        }
        let name = "registrations:global".to_owned();
        if shared(
            name,
            self.shared_global_registrations,
            RateLimited::GlobalRegistrations,
        )
        .await?
        .is_none()
        {
            self.registration()?;
        }
        Ok(())
    }

    /// Takes `n` query tokens of registered key `id`.
    pub(crate) fn queries_of_key(&self, id: &KeyId, n: usize) -> Result<(), ServerError> {
        take(&self.per_key, id, n, RateLimited::Key)
    }

    /// Takes `n` query tokens of peer network `peer`.
    pub(crate) fn queries_of_peer(&self, peer: &IpAddr, n: usize) -> Result<(), ServerError> {
        take(&self.per_peer, peer, n, RateLimited::Peer)
    }

    /// Takes one registration token of peer network `peer`.
    pub(crate) fn registration_of_peer(&self, peer: &IpAddr) -> Result<(), ServerError> {
        take(&self.registrations, peer, 1, RateLimited::Registrations)
    }

    /// Takes one token of the server's registrations.
    pub(crate) fn registration(&self) -> Result<(), ServerError> {
        take_direct(
            &self.global_registrations,
            1,
            RateLimited::GlobalRegistrations,
        )
    }

    /// Takes `n` tokens of the key cache's evictions (none when `n` is 0).
    pub(crate) fn evictions(&self, n: usize) -> Result<(), ServerError> {
        if n == 0 {
            return Ok(());
        }
        take_direct(&self.evictions, n, RateLimited::Evictions)
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

fn tokens(n: usize) -> NonZeroU32 {
    NonZeroU32::new(n.try_into().unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// What a check of governor's says.
type Outcome = Result<
    Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
    governor::InsufficientCapacity,
>;

fn refused(outcome: Outcome, who: RateLimited) -> Result<(), ServerError> {
    match outcome {
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

/// Takes `n` tokens for `key`, or says who is over their rate.
pub(crate) fn take<K: Clone + Eq + std::hash::Hash>(
    limiter: &Option<KeyedLimiter<K>>,
    key: &K,
    n: usize,
    who: RateLimited,
) -> Result<(), ServerError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    refused(limiter.check_key_n(key, tokens(n)), who)
}

/// Takes `n` tokens of a limiter without keys.
pub(crate) fn take_direct(
    limiter: &Option<DirectLimiter>,
    n: usize,
    who: RateLimited,
) -> Result<(), ServerError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    refused(limiter.check_n(tokens(n)), who)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiters(global: u32, evictions: u32) -> Limiters {
        Limiters::new(Quotas {
            per_key: None,
            per_peer: None,
            registrations: None,
            global_registrations: per_second(global),
            evictions: per_minute(evictions),
            shared_registrations: None,
            shared_global_registrations: None,
        })
    }

    #[test]
    fn global_limits_hold_across_peers() {
        let l = limiters(3, 2);
        for _ in 0..3 {
            l.registration().unwrap();
        }
        let err = l.registration().unwrap_err();
        assert_eq!(err.limit(), Some("global_registration_rate"));
        l.evictions(0).unwrap();
        l.evictions(2).unwrap();
        let err = l.evictions(1).unwrap_err();
        assert_eq!(err.limit(), Some("eviction_rate"));
        assert!(
            matches!(err, ServerError::RateLimited { retry_after: Some(d), .. } if d <= Duration::from_secs(30)),
            "{err:?}"
        );
    }
}
