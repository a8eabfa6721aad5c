//! The `serve` process: what `pir-server serve` does between parsing its flags and exiting, as a
//! library, so that it can be started and stopped in-process (tests, embedding).
//!
//! ```text
//! ServeConfig ─prepare─▶ Process ─bind─▶ Listening ─run(Signals)─────────────────▶ Ok(())
//!  (flags)     TLS identity  every port   serve at once: health NOT_SERVING, /readyz 503,
//!              checked, DP   bound (a     Discovery UNAVAILABLE; load the snapshot (a thread);
//!              keys, token,  port in use  then SERVING, READY=1. Reload: SIGHUP, Admin.Reload.
//!              --snapshot    fails here), Stop (SIGINT, SIGTERM): NOT_SERVING and STOPPING=1 at
//!              opens         pid file     once, --shutdown-delay, then no new connections,
//!                                         requests in flight finish, pid file removed
//! ```
//!
//! Every failure the command line can cause is a [`ProcessError`] naming the flag, reported
//! before the snapshot is loaded (a bad snapshot is refused once it loads). [`Signals::unix`] is
//! the production signal source; tests give their own.

use std::{
    fmt, future::Future, net::SocketAddr, path::PathBuf, pin::Pin, sync::Arc, time::Duration,
};

use pir_core::{CoreError, DpKeys, oprf::OprfKey};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    admin::{AdminToken, serve_admin_bounded},
    descriptors::{NoFile, raise_nofile_limit},
    error::ServerError,
    http::serve_http,
    keystore::{KeyStore, KeyStoreError},
    listener::Limits,
    notify::{self, PidFile},
    options::ServeOptions,
    readiness::Readiness,
    reload::{Loading, Reloader},
    service::DiscoveryService,
    tls::{TlsError, TlsIdentity},
    transport::serve_discovery,
};

/// Everything `pir-server serve` is told on its command line.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The snapshot file (also what a reload without a path reads); with `shards`, the
    /// manifest of a sharded directory.
    pub snapshot: PathBuf,
    /// For a sharded directory (`--manifest`): which of its shards to serve (`--shards`).
    pub shards: Option<crate::ShardSelection>,
    /// Address of the Discovery service.
    pub listen: SocketAddr,
    /// The server's limits.
    pub options: ServeOptions,
    /// Refuse snapshots (at start and on reload) not signed by a key in this file.
    pub dp_pub: Option<PathBuf>,
    /// The DP's OPRF secret key file: answer evaluations with it (and refuse snapshots keyed by
    /// another OPRF key). Without it the server is a PIR host only.
    pub oprf_key: Option<PathBuf>,
    /// Address of the Admin service, started only with `admin_token_file`.
    pub admin_listen: SocketAddr,
    /// File holding the admin bearer token.
    pub admin_token_file: Option<PathBuf>,
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`), if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve over TLS with this certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext on a non-loopback address (loopback needs no permission).
    pub plaintext: bool,
    /// Write the process id here once the ports are bound; removed at exit.
    pub pid_file: Option<PathBuf>,
    /// After a stop signal, keep serving this long with health NOT_SERVING before closing the
    /// listeners, so that load balancers stop sending first.
    pub shutdown_delay: Duration,
}

/// PEM files of a TLS identity.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key of `cert`.
    pub key: PathBuf,
}

/// What the process was doing when a system call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Starting the async runtime.
    StartingRuntime,
    /// Installing a signal handler (the signal's name).
    InstallingHandler(&'static str),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
        "--listen {listen} is not a loopback address: give --tls-cert and --tls-key, or \
         --plaintext to serve without TLS"
    )]
    NotLoopback {
        /// The address asked for.
        listen: SocketAddr,
    },
    /// The admin token file holds fewer than [`AdminToken::MIN_LEN`] bytes (trimmed).
    #[error(
        "--admin-token-file {}: the token must be at least {} characters",
        path.display(),
        AdminToken::MIN_LEN
    )]
    AdminTokenTooShort {
        /// The token file.
        path: PathBuf,
    },
    /// A file named by a flag could not be read or written.
    #[error("{flag} {}: {source}", path.display())]
    File {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listening address could not be bound.
    #[error("{flag} {addr}: {}", bind_reason(source))]
    Bind {
        /// The flag that named the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The DP key file does not parse (the error names the flag and the file).
    #[error("{0}")]
    DpPub(CoreError),
    /// The OPRF key file does not parse or is readable by others (the error names the flag
    /// and the file).
    #[error("{0}")]
    OprfKey(CoreError),
    /// The key store could not be opened or does not answer.
    #[error("--key-store {store}: {source}")]
    KeyStore {
        /// The store as the flag named it (a Redis password hidden).
        store: String,
        /// Why.
        source: KeyStoreError,
    },
    /// A system call failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: Step,
        /// The error.
        source: std::io::Error,
    },
    /// The snapshot was refused, or serving failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A bind failure as a sentence saying what to do.
fn bind_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => "address already in use; another process (another pir-server?) \
                                 listens there: stop it or choose another address"
            .into(),
        ErrorKind::AddrNotAvailable => {
            "address not available: no network interface of this machine has that IP address".into()
        }
        ErrorKind::PermissionDenied => {
            "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE".into()
        }
        _ => e.to_string(),
    }
}

impl ProcessError {
    fn io(step: Step, source: std::io::Error) -> Self {
        Self::Io { step, source }
    }

    fn file(flag: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::File {
            flag,
            path: path.to_path_buf(),
            source,
        }
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
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| ProcessError::io(Step::InstallingHandler("SIGINT"), e))?;
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
                _ = interrupt.recv() => tracing::info!("SIGINT"),
                _ = terminate.recv() => tracing::info!("SIGTERM"),
            }
        };
        Ok(Self::new(stop, reload))
    }
}

/// The files read and checked, the snapshot not yet loaded: ready to bind.
pub struct Process {
    config: ServeConfig,
    dp_keys: Option<DpKeys>,
    oprf_key: Option<OprfKey>,
    admin_token: Option<AdminToken>,
    identity: Option<TlsIdentity>,
    snapshot_bytes: u64,
}

impl Process {
    /// Checks what `config` names that is quick to check: the TLS identity, the DP keys, the
    /// admin token, and that the snapshot file opens. Needs no runtime.
    pub fn prepare(config: ServeConfig) -> Result<Self, ProcessError> {
        let identity = match &config.tls {
            Some(tls) => Some(TlsIdentity::from_files(&tls.cert, &tls.key)?),
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
            .transpose()
            .map_err(|e| ProcessError::DpPub(e.with_flag("--dp-pub")))?;
        let oprf_key = config
            .oprf_key
            .as_deref()
            .map(OprfKey::from_file)
            .transpose()
            .map_err(|e| ProcessError::OprfKey(e.with_flag("--oprf-key")))?;
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(|p| {
                // A secret: refused when its group or others may access it.
                let text = pir_core::fs::read_secret_text(p)
                    .map_err(|e| ProcessError::file("--admin-token-file", p, e))?;
                AdminToken::new(text.trim().to_owned()).ok_or_else(|| {
                    ProcessError::AdminTokenTooShort {
                        path: p.to_path_buf(),
                    }
                })
            })
            .transpose()?;
        let flag = if config.shards.is_some() {
            "--manifest"
        } else {
            "--snapshot"
        };
        let snapshot_error = |e| ProcessError::file(flag, &config.snapshot, e);
        let file = std::fs::File::open(&config.snapshot).map_err(snapshot_error)?;
        let meta = file.metadata().map_err(snapshot_error)?;
        if meta.is_dir() {
            return Err(snapshot_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a directory, not a snapshot file",
            )));
        }
        Ok(Self {
            config,
            dp_keys,
            oprf_key,
            admin_token,
            identity,
            snapshot_bytes: meta.len(),
        })
    }

    /// Binds every listener (Discovery; Admin with a token; the HTTP endpoint when asked) and
    /// writes the pid file, without accepting connections yet.
    pub async fn bind(self) -> Result<Listening, ProcessError> {
        // Each listener with its bound address (the port the system chose, for port 0).
        let bind = |flag: &'static str, addr: SocketAddr| async move {
            let error = |source| ProcessError::Bind { flag, addr, source };
            let listener = TcpListener::bind(addr).await.map_err(error)?;
            let bound = listener.local_addr().map_err(error)?;
            Ok::<_, ProcessError>((listener, bound))
        };
        let config = &self.config;
        let listener = bind("--listen", config.listen).await?;
        let admin = match &self.admin_token {
            Some(token) => {
                let (listener, addr) = bind("--admin-listen", config.admin_listen).await?;
                Some((listener, addr, token.clone()))
            }
            None => None,
        };
        let http = match config.metrics_listen {
            Some(addr) => Some(bind("--metrics-listen", addr).await?),
            None => None,
        };
        let key_store = open_key_store(&config.options).await?;
        let pid_file = config
            .pid_file
            .as_deref()
            .map(|p| PidFile::create(p).map_err(|e| ProcessError::file("--pid-file", p, e)))
            .transpose()?;
        Ok(Listening {
            process: self,
            listener,
            admin,
            http,
            key_store,
            _pid_file: pid_file,
            #[cfg(feature = "test-hooks")]
            hold_loading: None,
        })
    }
}

/// The key store `options` name, opened and answering, or the refusal naming `--key-store`.
async fn open_key_store(options: &ServeOptions) -> Result<KeyStore, ProcessError> {
    let refused = |source| ProcessError::KeyStore {
        store: options.key_store.to_string(),
        source,
    };
    // Opening the embedded file reads and may write it: off the runtime.
    let opened = options.clone();
    let handle = tokio::runtime::Handle::current();
    let store = tokio::task::spawn_blocking(move || {
        // A Redis store's connection manager is made within the runtime.
        let _runtime = handle.enter();
        KeyStore::open(&opened)
    })
    .await
    .map_err(|e| ServerError::Internal(format!("opening the key store: {e}")))?
    .map_err(refused)?;
    store.check().await.map_err(refused)?;
    tracing::info!(
        backend = store.kind(),
        store = %options.key_store,
        ttl = %humantime::format_duration(options.key_ttl),
        "key store"
    );
    Ok(store)
}

/// A bound server process, not yet accepting connections.
pub struct Listening {
    process: Process,
    key_store: KeyStore,
    listener: (TcpListener, SocketAddr),
    admin: Option<(TcpListener, SocketAddr, AdminToken)>,
    http: Option<(TcpListener, SocketAddr)>,
    // Removed when the process is done with its ports, however it ends.
    _pid_file: Option<PidFile>,
    #[cfg(feature = "test-hooks")]
    hold_loading: Option<std::sync::mpsc::Receiver<()>>,
}

/// Tells every task of a running process to stop; clonable.
type Stopper = Arc<watch::Sender<bool>>;

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn joined(task: Option<Task>, what: &str) -> Result<(), ServerError> {
    match task {
        Some(task) => task
            .await
            .map_err(|e| ServerError::Internal(format!("{what} task: {e}")))?,
        None => Ok(()),
    }
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

    /// The HTTP endpoint's (`/metrics`, `/healthz`, `/readyz`) bound address, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(_, addr)| *addr)
    }

    /// Test hook: the snapshot starts loading only once the returned sender sends (or is
    /// dropped), so that a test can watch the process while it loads.
    #[cfg(feature = "test-hooks")]
    pub fn danger_hold_loading(&mut self) -> std::sync::mpsc::Sender<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.hold_loading = Some(rx);
        tx
    }

    /// Serves until `signals` says stop: health and probes at once, the snapshot once loaded,
    /// reloading as `signals` and the Admin service say; then health turns NOT_SERVING, and
    /// after the shutdown delay the listeners close, requests in flight finish, and every task
    /// ends.
    pub async fn run(mut self, signals: Signals) -> Result<(), ProcessError> {
        let Signals { stop, reload } = signals;
        let readiness = Readiness::loading().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopper: Stopper = Arc::new(stop_tx);

        let delay = self.process.config.shutdown_delay;
        let (on_stop, on_stop_readiness) = (stopper.clone(), readiness.clone());
        tokio::spawn(async move {
            stop.await;
            // Health first: load balancers stop sending before anything closes.
            on_stop_readiness.stopping().await;
            notify::stopping();
            if !delay.is_zero() && on_stop_readiness.service().is_some() {
                tracing::info!(
                    delay = %humantime::format_duration(delay),
                    "stopping: health NOT_SERVING, still answering until the shutdown delay ends"
                );
                tokio::time::sleep(delay).await;
            }
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = on_stop.send(true);
        });

        // One connection cap over every listener, below the descriptor limit.
        let config = &self.process.config;
        let transport = &config.options.transport;
        let nofile = NoFile::current();
        let max_connections = transport.connection_cap(nofile.soft_or_max());
        if nofile
            .soft
            .is_some_and(|soft| max_connections as u64 > soft.saturating_sub(8))
        {
            tracing::warn!(
                max_connections,
                nofile = nofile.soft,
                "--max-connections is close to or above the file descriptor limit: accepts \
                 will fail for want of descriptors (and back off) before the cap is reached"
            );
        }
        let limits = Limits::new(transport, max_connections);
        tracing::info!(max_connections, nofile = ?nofile.soft, "connection cap");

        let http = self.http.take().map(|(listener, addr)| {
            tracing::info!(%addr, "HTTP /metrics, /healthz, /readyz");
            tokio::spawn(serve_http(
                readiness.clone(),
                limits.clone(),
                listener,
                stopped(&stop_rx),
            ))
        });
        let (listener, listen) = self.listener;
        tracing::info!(%listen, tls = self.process.identity.is_some(), "listening");
        // The limits in force, defaults included: what `-v` shows an operator tuning them.
        tracing::debug!(options = ?config.options, "serving with these limits");
        let main = tokio::spawn(serve_discovery(
            readiness.clone(),
            config.options.clone(),
            limits.clone(),
            listener,
            self.process.identity.as_ref().map(TlsIdentity::identity),
            stopped(&stop_rx),
        ));

        let loading = Loading {
            path: config.snapshot.clone(),
            bytes: self.process.snapshot_bytes,
            shards: config.shards.clone(),
            dp_keys: self.process.dp_keys.take(),
            #[cfg(feature = "test-hooks")]
            hold: self.hold_loading.take(),
        };
        let admin = self.admin.take();
        let served = serve_loaded(
            &self.process,
            self.key_store.clone(),
            loading,
            &readiness,
            (admin, limits),
            reload,
            &stop_rx,
        )
        .await;
        if served.is_err() {
            let _ = stopper.send(true);
        }
        let main = main
            .await
            .map_err(|e| ServerError::Internal(format!("server task: {e}")))?;
        let http = joined(http, "HTTP").await;
        let admin = match served {
            Ok(admin) => joined(admin, "admin").await,
            Err(e) => return Err(e),
        };
        main?;
        http?;
        admin?;
        tracing::info!("stopped");
        Ok(())
    }
}

type Task = JoinHandle<Result<(), ServerError>>;

/// Loads the snapshot (unless stopped first), then serves it: readiness, systemd, reloads and
/// the Admin service, whose task it returns.
async fn serve_loaded(
    process: &Process,
    key_store: KeyStore,
    loading: Loading,
    readiness: &Readiness,
    (admin, limits): (Option<(TcpListener, SocketAddr, AdminToken)>, Limits),
    mut reload: mpsc::Receiver<()>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<Option<Task>, ProcessError> {
    let config = &process.config;
    let (snapshot, dp_keys, took) = tokio::select! {
        loaded = loading.load() => loaded?,
        _ = stopped(stop_rx) => return Ok(None),
    };
    let service = DiscoveryService::with_key_store(
        snapshot,
        config.options.clone(),
        process.oprf_key.clone(),
        key_store,
    )?;
    service.record_load(took);
    let epoch = service.epoch();
    readiness.loaded(service.clone()).await;
    notify::ready(&format!("serving epoch {epoch}"));
    tracing::info!(epoch, "serving");
    if let Some(not_after) = process.identity.as_ref().and_then(TlsIdentity::not_after) {
        tracing::info!(
            not_after = %humantime::format_rfc3339_seconds(not_after),
            "TLS certificate valid until"
        );
    }

    let mut reloader = Reloader::new(service, config.snapshot.clone(), dp_keys);
    if let Some(shards) = &config.shards {
        reloader = reloader.for_shards(shards.clone());
    }
    let reload_reloader = reloader.clone();
    tokio::spawn(async move {
        while reload.recv().await.is_some() {
            // Failures are logged and counted by the reloader; the old snapshot keeps serving.
            let _ = reload_reloader.reload(None).await;
        }
    });
    let admin = match admin {
        Some((listener, addr, token)) => {
            tracing::info!(admin_listen = %addr, "admin service listening");
            Some(tokio::spawn(serve_admin_bounded(
                reloader,
                token,
                listener,
                limits,
                stopped(stop_rx),
            )))
        }
        None => {
            tracing::info!("admin service off (no --admin-token-file); SIGHUP still reloads");
            None
        }
    };
    Ok(admin)
}

/// `pir-server serve`: checks its files, starts a runtime, binds, loads and serves until SIGINT
/// or SIGTERM, reloading on SIGHUP and through the Admin service.
pub fn run(config: ServeConfig) -> Result<(), ProcessError> {
    raise_nofile_limit();
    let process = Process::prepare(config)?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| ProcessError::io(Step::StartingRuntime, e))?;
    let result = runtime.block_on(async {
        let signals = Signals::unix()?;
        let listening = process.bind().await?;
        listening.run(signals).await
    });
    // A reload still reading a file when the process stops is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
