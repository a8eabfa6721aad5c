//! The `pir.issuer.v1.Issuer` gRPC service: the three-way handshake's prover side.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{Quota, clock::Clock};
use pir_core::{
    Cpi, IssuerKey, MappingFields,
    identity::{DeltaLine, ENROLLMENT_ID_LEN, MspRequest, UserConsent, normalise_msp},
};
use pir_proto::issuer_v1::{
    CompleteEnrollmentRequest, CompleteEnrollmentResponse, MspAuth, RevokeMappingRequest,
    RevokeMappingResponse, StartEnrollmentRequest, StartEnrollmentResponse, issuer_server,
};
use rand::RngCore;
use tonic::{Request, Response, Status};

use crate::{
    auth::{MspRegistry, OperatorToken},
    code::CodeKey,
    error::IssuerError,
    feed::Feed,
    policy::Policy,
    sender::{Notice, NoticeKind, Senders},
    store::{Issued, Pending, Store, WrongCode},
};

type KeyedLimiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The rate limits of [`Policy`], per CPI, per MSP and per peer address.
pub(crate) struct Limits {
    per_cpi: Option<KeyedLimiter<String>>,
    per_msp: Option<KeyedLimiter<String>>,
    per_address: Option<KeyedLimiter<IpAddr>>,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per: u32, period: Duration) -> Option<KeyedLimiter<K>> {
    let burst = NonZeroU32::new(per)?;
    let quota = Quota::with_period(period / per)?.allow_burst(burst);
    Some(KeyedLimiter::keyed(quota))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Option<KeyedLimiter<K>>,
    key: &K,
    what: &'static str,
) -> Result<(), IssuerError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        IssuerError::RateLimited {
            what,
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    })
}

impl Limits {
    pub(crate) fn new(policy: &Policy) -> Self {
        Self {
            per_cpi: keyed(policy.starts_per_cpi_per_hour, Duration::from_secs(3600)),
            per_msp: keyed(policy.starts_per_msp_per_minute, Duration::from_secs(60)),
            per_address: keyed(
                policy.requests_per_address_per_minute,
                Duration::from_secs(60),
            ),
        }
    }

    /// Forgets idle buckets, so the state stays bounded.
    pub(crate) fn retain_recent(&self) {
        for limiter in [&self.per_cpi, &self.per_msp].into_iter().flatten() {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_address {
            limiter.retain_recent();
        }
    }
}

/// Everything a request needs; shared by the service and the sweeper.
pub(crate) struct State {
    pub(crate) issuer: IssuerKey,
    pub(crate) code_key: CodeKey,
    pub(crate) policy: Policy,
    pub(crate) registry: MspRegistry,
    pub(crate) operator: Option<OperatorToken>,
    pub(crate) senders: Senders,
    pub(crate) store: Arc<Store>,
    pub(crate) feed: Arc<Feed>,
    pub(crate) limits: Limits,
    pub(crate) name: String,
}

/// The gRPC service.
pub(crate) struct IssuerService {
    pub(crate) state: Arc<State>,
}

/// The peer's address, IPv6 aggregated to its /64 (one host often holds a whole /64).
fn peer<T>(request: &Request<T>) -> Option<IpAddr> {
    let ip = request.remote_addr()?.ip();
    Some(match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        IpAddr::V6(v6) => IpAddr::V4(
            v6.to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        ),
        v4 => v4,
    })
}

fn auth(auth: Option<&MspAuth>) -> Result<&MspAuth, IssuerError> {
    auth.ok_or(IssuerError::Unsigned)
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    work: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, IssuerError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| IssuerError::Internal(e.to_string()))?
        .map_err(IssuerError::from)
}

/// Appends to the feed on a blocking thread: its sync waits for the disk.
pub(crate) async fn append(feed: &Arc<Feed>, line: DeltaLine) -> Result<(), IssuerError> {
    let feed = feed.clone();
    tokio::task::spawn_blocking(move || feed.append(&line))
        .await
        .map_err(|e| IssuerError::Internal(e.to_string()))?
        .map_err(IssuerError::from)
}

impl State {
    fn check_address<T>(&self, request: &Request<T>) -> Result<(), IssuerError> {
        match peer(request) {
            Some(ip) => check(&self.limits.per_address, &ip, "requests from this address"),
            None => Ok(()),
        }
    }

    async fn start(
        &self,
        request: StartEnrollmentRequest,
    ) -> Result<StartEnrollmentResponse, IssuerError> {
        let now = now();
        let cpi = Cpi::parse(&request.cpi).map_err(|e| IssuerError::field("cpi", e))?;
        let msp = normalise_msp(&request.msp).map_err(|e| IssuerError::field("msp", e))?;
        let user_key: Option<[u8; 32]> = request
            .user_key
            .as_deref()
            .map(|k| {
                let key: [u8; 32] = k
                    .try_into()
                    .map_err(|_| IssuerError::field("user_key", "must be 32 bytes"))?;
                pir_core::identity::decode_public_key(&key)
                    .map_err(|e| IssuerError::field("user_key", e))?;
                Ok::<_, IssuerError>(key)
            })
            .transpose()?;
        let validity = self.policy.validity.as_secs();
        let fields = MappingFields::new(
            cpi.clone(),
            &msp,
            request.psi.as_deref(),
            request.context.as_deref(),
            now,
            now.saturating_add(validity),
        )
        .map_err(|e| match e {
            pir_core::CoreError::InvalidField { field, reason } => {
                IssuerError::field(field, reason)
            }
            other => IssuerError::field("request", other),
        })?;
        let signed = auth(request.auth.as_ref())?;
        self.registry.verify(
            &msp,
            &MspRequest::Start {
                cpi: &cpi,
                psi: request.psi.as_deref(),
                context: request.context.as_deref(),
                user_key: user_key.as_ref(),
            },
            signed.timestamp,
            &signed.signature,
            now,
            self.policy.max_clock_skew,
        )?;
        check(
            &self.limits.per_msp,
            &msp,
            "enrollments started by this MSP",
        )?;
        check(
            &self.limits.per_cpi,
            &cpi.as_str().to_owned(),
            "codes sent to this identifier",
        )?;
        // Refuse a CPI no sender can reach before anything is stored.
        self.senders.for_cpi(&cpi)?;

        let mut id = [0u8; ENROLLMENT_ID_LEN];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let code = CodeKey::generate(self.policy.code_digits);
        let code_expires_at = now.saturating_add(self.policy.code_ttl.as_secs());
        let pending = Pending {
            cpi: cpi.as_str().to_owned(),
            msp: msp.clone(),
            psi: fields.psi.clone(),
            context: fields.context.clone(),
            user_key: user_key.map(|k| k.to_vec()),
            not_before: fields.not_before,
            not_after: fields.not_after,
            code_mac: self.code_key.mac(&id, &code).to_vec(),
            code_expires_at,
            attempts_left: self.policy.code_attempts,
        };
        blocking(&self.store, move |s| s.insert_pending(&id, &pending)).await?;
        let notice = Notice {
            to: cpi.clone(),
            msp: msp.clone(),
            prover: self.name.clone(),
            kind: NoticeKind::Code {
                code,
                expires_at: code_expires_at,
            },
        };
        let started = std::time::Instant::now();
        if let Err(e) = self.senders.send(&notice).await {
            tracing::warn!(msp, error = %e, "a code could not be sent");
            // The code never reached anyone: the enrollment goes too.
            let _ = blocking(&self.store, move |s| s.forget_pending(&id)).await;
            return Err(e.into());
        }
        tracing::info!(
            msp,
            kind = if cpi.as_str().starts_with("mailto:") {
                "mailto"
            } else {
                "tel"
            },
            send_ms = started.elapsed().as_millis() as u64,
            "enrollment started"
        );
        let issuer = self.issuer.id();
        Ok(StartEnrollmentResponse {
            enrollment_id: id.to_vec(),
            code_expires_at,
            attempts: self.policy.code_attempts,
            not_before: fields.not_before,
            not_after: fields.not_after,
            issuer: issuer.0.to_vec(),
            cpi: cpi.as_str().to_owned(),
            user_signed_bytes: user_key
                .map(|k| fields.user_signed_bytes(&issuer, &k))
                .unwrap_or_default(),
        })
    }

    async fn complete(
        &self,
        request: CompleteEnrollmentRequest,
    ) -> Result<CompleteEnrollmentResponse, IssuerError> {
        let now = now();
        let id: [u8; ENROLLMENT_ID_LEN] = request
            .enrollment_id
            .as_slice()
            .try_into()
            .map_err(|_| IssuerError::field("enrollment_id", "must be 16 bytes"))?;
        let msp = normalise_msp(&request.msp).map_err(|e| IssuerError::field("msp", e))?;
        if request.code.len() > 32 {
            return Err(IssuerError::field("code", "longer than 32 bytes"));
        }
        let user_sig: Option<[u8; 64]> = request
            .user_sig
            .as_deref()
            .map(|s| {
                s.try_into()
                    .map_err(|_| IssuerError::field("user_sig", "must be 64 bytes"))
            })
            .transpose()?;
        let signed = auth(request.auth.as_ref())?;
        self.registry.verify(
            &msp,
            &MspRequest::Complete {
                enrollment: &id,
                code: &request.code,
                user_sig: user_sig.as_ref(),
            },
            signed.timestamp,
            &signed.signature,
            now,
            self.policy.max_clock_skew,
        )?;
        let pending = blocking(&self.store, move |s| s.pending(&id, now))
            .await?
            .ok_or(IssuerError::NoEnrollment)?;
        if pending.msp != msp {
            return Err(IssuerError::OtherMsp);
        }
        let code_mac: [u8; 32] = pending
            .code_mac
            .as_slice()
            .try_into()
            .map_err(|_| IssuerError::Internal("a stored code MAC is not 32 bytes".into()))?;
        if !self.code_key.matches(&id, &request.code, &code_mac) {
            return match blocking(&self.store, move |s| s.wrong_code(&id)).await? {
                WrongCode::AttemptsLeft(n) => Err(IssuerError::WrongCode { attempts_left: n }),
                WrongCode::Spent => Err(IssuerError::WrongCode { attempts_left: 0 }),
                WrongCode::Gone => Err(IssuerError::NoEnrollment),
            };
        }
        let cpi = Cpi::parse(&pending.cpi)
            .map_err(|e| IssuerError::Internal(format!("a stored CPI: {e}")))?;
        let fields = MappingFields::new(
            cpi,
            &pending.msp,
            pending.psi.as_deref(),
            pending.context.as_deref(),
            pending.not_before,
            pending.not_after,
        )
        .map_err(|e| IssuerError::Internal(format!("stored fields: {e}")))?;
        let mapping = match &pending.user_key {
            None => fields
                .sign(&self.issuer, None)
                .map_err(|e| IssuerError::Internal(e.to_string()))?,
            Some(key) => {
                let key: [u8; 32] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| IssuerError::Internal("a stored user key".into()))?;
                let sig = user_sig.ok_or(IssuerError::UserSignatureMissing)?;
                fields
                    .sign_with_consent(&self.issuer, UserConsent { key, sig })
                    .map_err(|_| IssuerError::BadUserSignature)?
            }
        };
        // The feed first: a crash after it leaves a line the store does not show yet, which
        // the next completion (or none) makes harmless; the other way round would lose it.
        let line = mapping.to_json_line();
        append(&self.feed, DeltaLine::Upsert(Box::new(mapping))).await?;
        let issued = Issued {
            mapping: line.clone(),
            not_after: pending.not_after,
            reminded: false,
        };
        let (cpi, msp) = (pending.cpi.clone(), pending.msp.clone());
        if !blocking(&self.store, move |s| s.finish(&id, &cpi, &msp, &issued)).await? {
            return Err(IssuerError::NoEnrollment);
        }
        tracing::info!(
            msp = pending.msp,
            not_after = pending.not_after,
            "mapping issued"
        );
        Ok(CompleteEnrollmentResponse { mapping: line })
    }

    /// Checks a user's withdrawal against the user key of the mapping this prover issued.
    async fn verify_user(
        &self,
        cpi: &Cpi,
        msp: &str,
        signed: &pir_proto::issuer_v1::UserAuth,
        now: u64,
    ) -> Result<(), IssuerError> {
        crate::auth::check_skew(signed.timestamp, now, self.policy.max_clock_skew)?;
        let signature: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| IssuerError::field("user_auth.signature", "must be 64 bytes"))?;
        let (key_cpi, key_msp) = (cpi.as_str().to_owned(), msp.to_owned());
        let issued = blocking(&self.store, move |s| s.issued(&key_cpi, &key_msp)).await?;
        let user_key = issued
            .and_then(|i| pir_core::Mapping::from_json_line(&i.mapping).ok())
            .and_then(|m| m.user)
            .map(|u| u.key)
            .ok_or(IssuerError::NoUserKey)?;
        pir_core::identity::verify_withdrawal(&user_key, cpi, msp, signed.timestamp, &signature)
            .map_err(|_| IssuerError::BadUserSignature)
    }

    async fn revoke(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        request: RevokeMappingRequest,
    ) -> Result<RevokeMappingResponse, IssuerError> {
        let now = now();
        let cpi = Cpi::parse(&request.cpi).map_err(|e| IssuerError::field("cpi", e))?;
        let msp = normalise_msp(&request.msp).map_err(|e| IssuerError::field("msp", e))?;
        let by = match (&request.auth, &request.user_auth) {
            (Some(signed), _) => {
                self.registry.verify(
                    &msp,
                    &MspRequest::Revoke { cpi: &cpi },
                    signed.timestamp,
                    &signed.signature,
                    now,
                    self.policy.max_clock_skew,
                )?;
                "msp"
            }
            (None, Some(signed)) => {
                self.verify_user(&cpi, &msp, signed, now).await?;
                "user"
            }
            (None, None) => match &self.operator {
                Some(token) if token.admits(metadata) => "operator",
                _ => return Err(IssuerError::NotOperator),
            },
        };
        append(
            &self.feed,
            DeltaLine::Remove {
                cpi: cpi.clone(),
                msp: Some(msp.clone()),
            },
        )
        .await?;
        let key = cpi.as_str().to_owned();
        let revoked = blocking(&self.store, move |s| s.revoke(&key, &msp)).await?;
        tracing::info!(by, revoked, "mapping revoked");
        Ok(RevokeMappingResponse { revoked })
    }
}

#[tonic::async_trait]
impl issuer_server::Issuer for IssuerService {
    async fn start_enrollment(
        &self,
        request: Request<StartEnrollmentRequest>,
    ) -> Result<Response<StartEnrollmentResponse>, Status> {
        self.state.check_address(&request)?;
        Ok(Response::new(self.state.start(request.into_inner()).await?))
    }

    async fn complete_enrollment(
        &self,
        request: Request<CompleteEnrollmentRequest>,
    ) -> Result<Response<CompleteEnrollmentResponse>, Status> {
        self.state.check_address(&request)?;
        Ok(Response::new(
            self.state.complete(request.into_inner()).await?,
        ))
    }

    async fn revoke_mapping(
        &self,
        request: Request<RevokeMappingRequest>,
    ) -> Result<Response<RevokeMappingResponse>, Status> {
        self.state.check_address(&request)?;
        let metadata = request.metadata().clone();
        Ok(Response::new(
            self.state.revoke(&metadata, request.into_inner()).await?,
        ))
    }
}
