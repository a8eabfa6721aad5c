//! A running prover: its port, the service, and the sweeper that sends re-verification
//! reminders and withdraws expired mappings. Testable in-process ([`start`]); the binary's
//! `serve` runs the same until a signal.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use pir_core::{Cpi, IssuerKey, identity::DeltaLine};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    auth::{MspRegistry, OperatorToken},
    code::CodeKey,
    feed::Feed,
    policy::Policy,
    sender::{Notice, NoticeKind, Senders},
    service::{IssuerService, Limits, State, now},
    store::Store,
};

/// Largest request the prover reads: its messages are a few hundred bytes.
const MAX_MESSAGE: usize = 16 << 10;

/// What a prover needs to start.
#[derive(Debug)]
pub struct IssuerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The key that signs mappings (`--issuer-key`).
    pub issuer_key: IssuerKey,
    /// The registered MSPs' public keys, `<domain>.pub` each (`--msp-keys`).
    pub msp_keys: PathBuf,
    /// The state store (`--state`).
    pub state: PathBuf,
    /// The delta feed (`--feed`).
    pub feed: PathBuf,
    /// The prover's name in messages to users (`--name`).
    pub name: String,
    /// How codes reach users.
    pub senders: Senders,
    /// The operator's token, for revocations by the operator.
    pub operator: Option<OperatorToken>,
    /// Validity, codes and limits.
    pub policy: Policy,
    /// A PEM certificate chain and key to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
}

/// Why the prover did not start; each names its flag.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag's value is refused.
    #[error("{0}")]
    Config(String),
    /// The state store could not be opened.
    #[error("--state: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The feed could not be opened.
    #[error("--feed: {0}")]
    Feed(#[from] crate::feed::FeedError),
    /// The port could not be bound.
    #[error("--listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Reminders sent (or attempted: a failure is logged).
    pub reminders: usize,
    /// Expired mappings withdrawn (a removal each in the feed).
    pub expired: usize,
    /// Pending enrollments dropped with their expired codes.
    pub dropped_pending: usize,
}

/// A prover serving on its port.
pub struct RunningIssuer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    sweeper: JoinHandle<()>,
}

impl std::fmt::Debug for RunningIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningIssuer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Opens the store and feed, binds the port and serves.
pub async fn start(config: IssuerConfig) -> Result<RunningIssuer, StartError> {
    config.policy.check().map_err(StartError::Config)?;
    if !config.msp_keys.is_dir() {
        return Err(StartError::Config(format!(
            "--msp-keys {}: not a directory (it holds each registered MSP's key as \
             <domain>.pub)",
            config.msp_keys.display()
        )));
    }
    if config.senders.email.is_none() && config.senders.phone.is_none() {
        return Err(StartError::Config(
            "no code sender: give --smtp (mailto:), --sms-webhook (tel:) or --code-file".into(),
        ));
    }
    let tls = match &config.tls {
        None => None,
        Some((cert, key)) => {
            let read = |flag: &str, p: &PathBuf| {
                std::fs::read(p)
                    .map_err(|e| StartError::Config(format!("{flag} {}: {e}", p.display())))
            };
            let identity = tonic::transport::Identity::from_pem(
                read("--tls-cert", cert)?,
                read("--tls-key", key)?,
            );
            Some(tonic::transport::ServerTlsConfig::new().identity(identity))
        }
    };
    let store = Arc::new(Store::open(&config.state)?);
    let feed = Arc::new(Feed::open(&config.feed)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let state = Arc::new(State {
        code_key: CodeKey::of(&config.issuer_key),
        issuer: config.issuer_key,
        limits: Limits::new(&config.policy),
        policy: config.policy,
        registry: MspRegistry::new(&config.msp_keys),
        operator: config.operator,
        senders: config.senders,
        store,
        feed,
        name: config.name,
    });
    let service = pir_proto::issuer_v1::issuer_server::IssuerServer::new(IssuerService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pir_proto::ISSUER_FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Config(format!("reflection: {e}")))?;
    let mut builder = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(60))
        .concurrency_limit_per_connection(64)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::Config(format!("--tls-cert/--tls-key: {e}")))?;
    }
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(
        builder
            .add_service(service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop.await;
            }),
    );
    let sweeper = {
        let state = state.clone();
        let interval = config.sweep_interval.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.limits.retain_recent();
                if let Err(e) = sweep(&state, now()).await {
                    tracing::error!(error = %e, "sweep failed; retrying at the next interval");
                }
            }
        })
    };
    tracing::info!(%addr, "ID prover listening");
    Ok(RunningIssuer {
        addr,
        state,
        shutdown: Some(shutdown),
        server,
        sweeper,
    })
}

/// Sends due reminders, withdraws expired mappings and drops stale enrollments, as of `at`.
async fn sweep(state: &State, at: u64) -> Result<SweepReport, crate::error::IssuerError> {
    let store = state.store.clone();
    let remind_before = state.policy.remind_before.as_secs();
    let due = tokio::task::spawn_blocking(move || store.sweep(at, remind_before))
        .await
        .map_err(|e| crate::error::IssuerError::Internal(e.to_string()))??;
    for (cpi, msp) in &due.expired {
        let Ok(cpi) = Cpi::parse(cpi) else { continue };
        crate::service::append(
            &state.feed,
            DeltaLine::Remove {
                cpi,
                msp: Some(msp.clone()),
            },
        )
        .await?;
    }
    for (cpi, msp, not_after) in &due.reminders {
        let Ok(to) = Cpi::parse(cpi) else { continue };
        let notice = Notice {
            to,
            msp: msp.clone(),
            prover: state.name.clone(),
            kind: NoticeKind::Reminder {
                not_after: *not_after,
            },
        };
        if let Err(e) = state.senders.send(&notice).await {
            tracing::warn!(msp, error = %e, "a re-verification reminder could not be sent");
        }
    }
    if !due.expired.is_empty() || !due.reminders.is_empty() || due.dropped_pending > 0 {
        tracing::info!(
            reminders = due.reminders.len(),
            expired = due.expired.len(),
            dropped_pending = due.dropped_pending,
            "sweep"
        );
    }
    Ok(SweepReport {
        reminders: due.reminders.len(),
        expired: due.expired.len(),
        dropped_pending: due.dropped_pending,
    })
}

impl RunningIssuer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs one sweep as if the time were `at` (unix seconds): what the sweeper does on its
    /// interval, for tests and operators' tools.
    pub async fn sweep_at(&self, at: u64) -> Result<SweepReport, crate::error::IssuerError> {
        sweep(&self.state, at).await
    }

    /// Stops serving: requests in flight finish, then the port closes and the store is
    /// released.
    pub async fn stop(mut self) {
        self.sweeper.abort();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match (&mut self.server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the server task failed"),
        }
        let _ = (&mut self.sweeper).await;
        // Connections still closing hold the service, and with it the store; the store is
        // released (for a restart on the same file) once the last one is gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (Arc::strong_count(&self.state) > 1 || Arc::strong_count(&self.state.store) > 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Serves until the server fails.
    pub async fn wait(mut self) -> Result<(), tonic::transport::Error> {
        let result = (&mut self.server).await;
        self.sweeper.abort();
        match result {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

/// Every mapping the state at `path` holds (not withdrawn, not expired), as JSON lines. The
/// prover must not be running: the state is opened exclusively.
pub fn export(path: &std::path::Path) -> Result<Vec<String>, crate::store::StoreError> {
    let store = Store::open(path)?;
    let at = now();
    Ok(store
        .all_issued()?
        .into_iter()
        .filter(|i| i.not_after >= at)
        .map(|i| i.mapping)
        .collect())
}
