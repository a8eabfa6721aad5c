//! The `serve` process: what `pir-server serve` does between parsing its flags and exiting, as a
//! library, so that it can be started and stopped in-process (tests, embedding).
//!
//! ```text
//! ServeConfig ─Process::load─▶ Process ─bind─▶ Listening ─run(Signals)─▶ Ok(()) once stopped
//!  (flags)      TLS files,      (no runtime   Discovery, Admin    reload: SIGHUP, Admin.Reload
//!               DP keys, token, needed)       and metrics         stop: SIGINT / SIGTERM, then
//!               snapshot                      listeners bound       no new connections, requests
//!                                                                   in flight finish, tasks end
//! ```
//!
//! Every failure the command line can cause is a [`ProcessError`], reported before anything
//! listens. [`Signals::unix`] is the production signal source; tests give their own.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
};

use pir_core::{CoreError, DpKeys, Snapshot};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tonic::transport::Identity;

use crate::{
    admin::{AdminToken, serve_admin},
    error::ServerError,
    http::serve_metrics,
    options::ServeOptions,
    reload::{Reloader, load_checked},
    service::DiscoveryService,
    transport::serve_tls,
};

/// Everything `pir-server serve` is told on its command line.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The snapshot file (also what a reload without a path reads).
    pub snapshot: PathBuf,
    /// Address of the Discovery service.
    pub listen: SocketAddr,
    /// The server's limits.
    pub options: ServeOptions,
    /// Refuse snapshots (at start and on reload) not signed by a key in this file.
    pub dp_pub: Option<PathBuf>,
    /// Address of the Admin service, started only with `admin_token_file`.
    pub admin_listen: SocketAddr,
    /// File holding the admin bearer token.
    pub admin_token_file: Option<PathBuf>,
    /// Address of the HTTP metrics endpoint, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve over TLS with this certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext on a non-loopback address (loopback needs no permission).
    pub plaintext: bool,
}

/// PEM files of a TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key of `cert`.
    pub key: PathBuf,
}

/// What the process was doing when an I/O call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Reading a file named on the command line.
    Reading(PathBuf),
    /// Binding a listening address.
    Binding(SocketAddr),
    /// Starting the async runtime.
    StartingRuntime,
    /// Installing a signal handler (the signal's name).
    InstallingHandler(&'static str),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reading(path) => write!(f, "reading {}", path.display()),
            Self::Binding(addr) => write!(f, "binding {addr}"),
            Self::StartingRuntime => f.write_str("starting the runtime"),
            Self::InstallingHandler(signal) => write!(f, "installing the {signal} handler"),
        }
    }
}

/// Why the serve process could not start, or ended with an error. Never sent to a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// Plaintext on an address others can reach, without saying so.
    #[error(
        "{listen} is not a loopback address: give --tls-cert and --tls-key, or --plaintext to \
         serve without TLS"
    )]
    NotLoopback {
        /// The address asked for.
        listen: SocketAddr,
    },
    /// The admin token file holds fewer than [`AdminToken::MIN_LEN`] bytes (trimmed).
    #[error("the admin token must be at least {} characters", AdminToken::MIN_LEN)]
    AdminTokenTooShort,
    /// An I/O call failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: Step,
        /// The error.
        source: std::io::Error,
    },
    /// The DP key file does not parse.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The snapshot was refused, or serving failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl ProcessError {
    fn io(step: Step, source: std::io::Error) -> Self {
        Self::Io { step, source }
    }
}

/// Where the process's stop and reload requests come from.
pub struct Signals {
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    reload: mpsc::Receiver<()>,
}

impl Signals {
    /// Stops when `stop` resolves; reloads the snapshot file for each message on `reload`.
    pub fn new(
        stop: impl Future<Output = ()> + Send + 'static,
        reload: mpsc::Receiver<()>,
    ) -> Self {
        Self {
            stop: Box::pin(stop),
            reload,
        }
    }

    /// SIGINT or SIGTERM stops; SIGHUP reloads. Must be called within the runtime.
    pub fn unix() -> Result<Self, ProcessError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|e| ProcessError::io(Step::InstallingHandler("SIGHUP"), e))?;
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| ProcessError::io(Step::InstallingHandler("SIGTERM"), e))?;
        let (tx, reload) = mpsc::channel(1);
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                if tx.send(()).await.is_err() {
                    break;
                }
            }
        });
        let stop = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        Ok(Self::new(stop, reload))
    }
}

/// The files read and the snapshot loaded and checked: ready to bind.
pub struct Process {
    config: ServeConfig,
    snapshot: Snapshot,
    dp_keys: Option<DpKeys>,
    admin_token: Option<AdminToken>,
    identity: Option<Identity>,
}

fn read(path: &Path) -> Result<Vec<u8>, ProcessError> {
    std::fs::read(path).map_err(|e| ProcessError::io(Step::Reading(path.to_path_buf()), e))
}

impl Process {
    /// Reads the files `config` names (TLS identity, DP keys, admin token) and loads and checks
    /// the snapshot. Needs no runtime.
    pub fn load(config: ServeConfig) -> Result<Self, ProcessError> {
        let identity = match &config.tls {
            Some(tls) => Some(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?)),
            None if !config.listen.ip().is_loopback() && !config.plaintext => {
                return Err(ProcessError::NotLoopback {
                    listen: config.listen,
                });
            }
            None => None,
        };
        let dp_keys = config
            .dp_pub
            .as_deref()
            .map(DpKeys::from_file)
            .transpose()?;
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ProcessError::io(Step::Reading(p.to_path_buf()), e))?;
                AdminToken::new(text.trim().to_owned()).ok_or(ProcessError::AdminTokenTooShort)
            })
            .transpose()?;
        let snapshot = load_checked(&config.snapshot, dp_keys.as_ref())?;
        let h = snapshot.header();
        tracing::info!(
            epoch = h.epoch,
            mappings = h.mapping_count,
            items = h.scheme.num_items(),
            signed = h.signature.is_some(),
            "snapshot loaded"
        );
        Ok(Self {
            config,
            snapshot,
            dp_keys,
            admin_token,
            identity,
        })
    }

    /// Starts the service and binds its listeners (Discovery; Admin with a token; metrics when
    /// asked), without accepting connections yet.
    pub async fn bind(self) -> Result<Listening, ProcessError> {
        let Self {
            config,
            snapshot,
            dp_keys,
            admin_token,
            identity,
        } = self;
        // Each listener with its bound address (the port the system chose, for port 0).
        let bind = |addr: SocketAddr| async move {
            let io = |e| ProcessError::io(Step::Binding(addr), e);
            let listener = TcpListener::bind(addr).await.map_err(io)?;
            let bound = listener.local_addr().map_err(io)?;
            Ok::<_, ProcessError>((listener, bound))
        };
        let service = DiscoveryService::new(snapshot, config.options)?;
        let reloader = Reloader::new(service.clone(), config.snapshot, dp_keys);
        let listener = bind(config.listen).await?;
        let admin = match admin_token {
            Some(token) => {
                let (listener, admin_listen) = bind(config.admin_listen).await?;
                tracing::info!(%admin_listen, "admin service listening");
                Some((listener, admin_listen, token))
            }
            None => {
                tracing::info!("admin service off (no --admin-token-file); SIGHUP still reloads");
                None
            }
        };
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let (listener, addr) = bind(addr).await?;
                tracing::info!(%addr, "metrics at /metrics");
                Some((listener, addr))
            }
            None => None,
        };
        Ok(Listening {
            service,
            reloader,
            listener,
            admin,
            metrics,
            identity,
        })
    }
}

/// A bound server process, not yet accepting connections.
pub struct Listening {
    service: DiscoveryService,
    reloader: Reloader,
    listener: (TcpListener, SocketAddr),
    admin: Option<(TcpListener, SocketAddr, AdminToken)>,
    metrics: Option<(TcpListener, SocketAddr)>,
    identity: Option<Identity>,
}

impl Listening {
    /// The Discovery service's bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.1
    }

    /// The Admin service's bound address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr, _)| *addr)
    }

    /// The metrics endpoint's bound address, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The service being served.
    pub fn service(&self) -> &DiscoveryService {
        &self.service
    }

    /// Serves until `signals` says stop, reloading as it says; then stops accepting, lets the
    /// requests in flight finish, and waits for the admin and metrics tasks.
    pub async fn run(self, signals: Signals) -> Result<(), ProcessError> {
        let Self {
            service,
            reloader,
            listener: (listener, listen),
            admin,
            metrics,
            identity,
        } = self;
        let Signals { stop, mut reload } = signals;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let reload_reloader = reloader.clone();
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                // Failures are logged by the reloader; the old snapshot keeps serving.
                let _ = reload_reloader.reload(None).await;
            }
        });
        let admin = admin.map(|(listener, _, token)| {
            tokio::spawn(serve_admin(reloader, token, listener, stopped()))
        });
        let metrics = metrics
            .map(|(listener, _)| tokio::spawn(serve_metrics(service.clone(), listener, stopped())));
        tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stop_tx.send(true);
        });

        tracing::info!(%listen, tls = identity.is_some(), "serving");
        serve_tls(service, listener, identity, stopped()).await?;
        if let Some(metrics) = metrics {
            metrics
                .await
                .map_err(|e| ServerError::Internal(format!("metrics task: {e}")))??;
        }
        if let Some(admin) = admin {
            admin
                .await
                .map_err(|e| ServerError::Internal(format!("admin task: {e}")))??;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// `pir-server serve`: loads, starts a runtime, binds, and serves until SIGINT or SIGTERM,
/// reloading on SIGHUP and through the Admin service.
pub fn run(config: ServeConfig) -> Result<(), ProcessError> {
    let process = Process::load(config)?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| ProcessError::io(Step::StartingRuntime, e))?;
    runtime.block_on(async {
        let listening = process.bind().await?;
        listening.run(Signals::unix()?).await
    })
}
