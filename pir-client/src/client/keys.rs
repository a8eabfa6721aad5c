//! The client's keys: generated off the runtime, registered with the server, and kept
//! registered: a registration expires (the server says when), and is renewed with `RenewKeys`
//! (a key id and a MAC, not megabytes of keys) once half its lifetime has passed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pir_core::{ClientKeys, KeyId, SchemeParams, human::Time};
use pir_proto::{
    ConfigIn, Expiry, REASON_UNKNOWN_KEY,
    v1::{self, discovery_client::DiscoveryClient},
};
use prost::Message;
use tonic::transport::Channel;

use super::{
    lookup::reason,
    rpc::{GRPC_FRAME_BYTES, Wire, request, within},
};
use crate::error::{ClientError, Result};

/// Generates keys off the async runtime's worker threads (it takes hundreds of milliseconds).
pub(super) async fn generate_keys(params: SchemeParams) -> Result<ClientKeys> {
    tracing::info!("generating client keys");
    let started = Instant::now();
    let keys = tokio::task::spawn_blocking(move || ClientKeys::generate(&params))
        .await
        .map_err(|e| ClientError::Internal(format!("key generation task failed: {e}")))??;
    tracing::info!(
        key_id = %keys.id(),
        millis = started.elapsed().as_millis() as u64,
        "generated client keys"
    );
    Ok(keys)
}

/// What the client knows of a registration's lifetime with one server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Lease {
    /// Not known: keys from the key file, perhaps registered by an earlier run. Renewing
    /// tells (and registers them when the server does not know them).
    #[default]
    Unknown,
    /// Registered until `expires_at`; renewed from `renew_at` on, half-way.
    Until {
        expires_at: SystemTime,
        renew_at: SystemTime,
    },
    /// The server states no expiry (it keeps keys until it evicts them): nothing to renew.
    Forever,
}

impl Lease {
    /// The lease a registration or renewal answered with `expiry` gives, from now.
    pub(super) fn granted(expiry: Option<Expiry>) -> Self {
        let Some(expiry) = expiry else {
            return Self::Forever;
        };
        let now = SystemTime::now();
        let left = expiry.at().duration_since(now).unwrap_or_default();
        Self::Until {
            expires_at: expiry.at(),
            renew_at: now + left / 2,
        }
    }

    /// Whether to renew now.
    pub(super) fn due(&self) -> bool {
        match self {
            Self::Unknown => true,
            Self::Until { renew_at, .. } => SystemTime::now() >= *renew_at,
            Self::Forever => false,
        }
    }

    /// When the registration expires, if known.
    pub(super) fn expires_at(&self) -> Option<SystemTime> {
        match self {
            Self::Until { expires_at, .. } => Some(*expires_at),
            Self::Unknown | Self::Forever => None,
        }
    }
}

/// What a renewal came back with.
pub(super) enum Renewal {
    /// Renewed: the new lease.
    Renewed(Lease),
    /// The server does not know the keys (never registered, expired, evicted): register.
    Unknown,
    /// A server from before renewals: its registrations do not expire.
    Unsupported,
}

/// Renews the registration of `keys` (a key id and a MAC: a few dozen bytes).
pub(super) async fn renew(
    grpc: &mut DiscoveryClient<Channel>,
    keys: &ClientKeys,
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<Renewal> {
    let message = v1::RenewKeysRequest::authenticated(keys);
    wire.send(&message);
    let reply = within(
        "RenewKeys",
        deadline,
        grpc.renew_keys(request(message, deadline)),
    )
    .await?;
    match reply {
        Ok(response) => {
            wire.receive(&response);
            let lease = Lease::granted(Expiry::of_renewal(&response));
            log_lease(keys.id(), "renewed keys", lease);
            Ok(Renewal::Renewed(lease))
        }
        Err(status) if reason(&status) == Some(REASON_UNKNOWN_KEY) => Ok(Renewal::Unknown),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Renewal::Unsupported),
        Err(status) => Err(ClientError::rpc("RenewKeys", status)),
    }
}

/// The endpoints that hold (or may hold) the keys' registration, by URL, each with its lease,
/// renewed at each of them once due. Each endpoint is renewed, not one per key store: the
/// client cannot tell which endpoints share a store, a renewal is a few dozen bytes, and an
/// endpoint with a store of its own would otherwise let the keys expire there.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    held: BTreeMap<String, (DiscoveryClient<Channel>, Lease)>,
}

impl Registrations {
    /// `url` registered (or renewed) the keys until `lease` says.
    pub(super) fn registered(&mut self, url: &str, grpc: &DiscoveryClient<Channel>, lease: Lease) {
        self.held.insert(url.to_owned(), (grpc.clone(), lease));
    }

    /// `url` accepted the keys (answered a query or an evaluation made with them): it holds a
    /// registration, perhaps from an earlier run or another endpoint sharing its store; when
    /// its lease is not known yet, the next renewal asks.
    pub(super) fn accepted(&mut self, url: &str, grpc: &DiscoveryClient<Channel>) {
        self.held
            .entry(url.to_owned())
            .or_insert_with(|| (grpc.clone(), Lease::Unknown));
    }

    /// Renews the registration at every endpoint whose lease is due. One that no longer knows
    /// the keys, or cannot be reached, is forgotten: the next request there that says
    /// `unknown-key` registers again (once, rather than at every endpoint of a shared store
    /// that lost them), and the next one it answers tracks it again. Failures are only logged.
    pub(super) async fn renew_due(
        &mut self,
        keys: &ClientKeys,
        deadline: Option<Duration>,
        wire: &mut Wire,
    ) {
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, (_, lease))| lease.due())
            .map(|(url, _)| url.clone())
            .collect();
        for url in due {
            let Some((grpc, _)) = self.held.get_mut(&url) else {
                continue;
            };
            match renew(grpc, keys, deadline, wire).await {
                Ok(Renewal::Renewed(lease)) => {
                    if let Some((_, held)) = self.held.get_mut(&url) {
                        *held = lease;
                    }
                }
                Ok(Renewal::Unsupported) => {
                    if let Some((_, held)) = self.held.get_mut(&url) {
                        *held = Lease::Forever;
                    }
                }
                Ok(Renewal::Unknown) => {
                    tracing::info!(%url, "the endpoint no longer knows our keys");
                    self.held.remove(&url);
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "renewing the keys' registration failed");
                    self.held.remove(&url);
                }
            }
        }
    }
}

fn log_lease(id: KeyId, what: &'static str, lease: Lease) {
    match lease.expires_at() {
        Some(at) => {
            let unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            tracing::info!(key_id = %id, expires_at = %Time(unix), "{what}");
        }
        None => tracing::info!(key_id = %id, "{what} (no expiry stated)"),
    }
}

/// Registers `keys` with the server whose configuration is `config`; refused before anything is
/// sent when their message exceeds the server's stated limit. Returns the registration's lease.
pub(super) async fn register(
    grpc: &mut DiscoveryClient<Channel>,
    keys: &ClientKeys,
    config: &ConfigIn,
    deadline: Option<Duration>,
    wire: &mut Wire,
) -> Result<Lease> {
    let message = v1::RegisterKeysRequest::for_keys(keys);
    let size = message.encoded_len() as u64 + GRPC_FRAME_BYTES;
    let server_limit = config.max_message_bytes();
    if server_limit > 0 && size > server_limit {
        return Err(ClientError::BadConfig(format!(
            "public keys need a {size}-byte message, the server takes at most {server_limit}"
        )));
    }
    wire.send(&message);
    let response = within(
        "RegisterKeys",
        deadline,
        grpc.register_keys(request(message, deadline)),
    )
    .await?
    .map_err(|s| ClientError::rpc("RegisterKeys", s))?;
    wire.receive(&response);
    if response.key_id != keys.id().0 {
        return Err(ClientError::Protocol(format!(
            "server registered the keys as {}, expected {}",
            shown_id(&response.key_id),
            keys.id()
        )));
    }
    tracing::debug!(key_id = %keys.id(), bytes = size, "registered keys");
    let lease = Lease::granted(Expiry::of_registration(&response));
    log_lease(keys.id(), "registered keys", lease);
    Ok(lease)
}

/// A key id from the wire as [`KeyId`] displays, or its length when it is not one.
fn shown_id(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes) {
        Ok(id) => KeyId(id).to_string(),
        Err(_) => format!("a {}-byte id", bytes.len()),
    }
}
