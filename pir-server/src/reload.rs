//! Hot reload: swap in a new snapshot without a restart (SIGHUP, or the token-protected Admin
//! RPC on its own listener, in `admin.rs`).
//!
//! ```text
//! SIGHUP ──────────────────┐
//! Admin.Reload(path, force)┴▶ Reloader::reload ─▶ a task of its own, holding the reload lock:
//!   wait until the snapshot replaced last time is freed (at most two resident)
//!   open: a regular file only (a FIFO is refused at once, never opened blocking)
//!   header: DP signature, then epoch above the serving one (unless forced)  ◀─ milliseconds
//!   payload: read and checksummed ─▶ service.install
//! any refusal: logged, counted, returned; the old snapshot keeps serving
//! ```
//!
//! The task is not cancelled with its caller: an Admin call cancelled mid-load leaves the lock
//! held until the load ends, so cancelled calls cannot pile up copies of the snapshot; a call
//! cancelled while waiting for its turn does not start a load at all. SIGHUP never forces.
//!
//! systemd hears `RELOADING=1` when a reload starts and `READY=1` when it ends, either way.
//! [`Loading`] is the first load, at start, with progress in the log.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use pir_core::{DpKeys, Snapshot, SnapshotHeader};
use tokio::sync::{Mutex, oneshot};

use crate::{
    directory::{Directory, ShardSelection},
    error::ServerError,
    notify,
    service::{DiscoveryService, Retired},
};

/// Loads snapshot files, checks them, and installs them into a running service.
#[derive(Clone)]
pub struct Reloader {
    service: DiscoveryService,
    path: PathBuf,
    /// For a sharded directory (`path` is its manifest): the shards served.
    shards: Option<ShardSelection>,
    dp_keys: Option<Arc<DpKeys>>,
    // One reload at a time: each holds a whole database in memory while loading. Guards the
    // snapshots the last reload replaced, which must be gone before another loads.
    lock: Arc<Mutex<Retired>>,
}

/// Loads what `path` holds: the snapshot, or with `shards` the manifest and those of its
/// shards (see `directory.rs`), refusing an epoch not above `serving`, if given.
pub(crate) fn load_served(
    path: &Path,
    shards: Option<&ShardSelection>,
    dp_keys: Option<&DpKeys>,
    serving: Option<u64>,
) -> Result<Directory, ServerError> {
    let directory = match shards {
        Some(selection) => Directory::load_sharded(path, selection, dp_keys, serving)?,
        None => load_rising(path, dp_keys, serving).map(Directory::from)?,
    };
    // Per snapshot, before it is installed: a warning if its preset was withdrawn, and
    // YPIR+SP's offline precomputation (the hint's columns, the packing's first rows), which the
    // first query must not pay.
    for (_, snapshot) in &directory.shards {
        let config = snapshot.config();
        if let Some(params) = config.scheme().spiral().filter(|p| p.is_withdrawn()) {
            // Served (the operator may be mid-rebuild), but clients refuse it: say so loudly.
            tracing::warn!(
                path = %path.display(),
                %params,
                "this snapshot uses a withdrawn parameter preset (answers were measured to \
                 decode wrong): clients refuse it; rebuild it with this pir-server's build"
            );
        }
        if snapshot.engine() == pir_core::Engine::YpirSp {
            let started = std::time::Instant::now();
            let database = snapshot.ypir_database()?;
            tracing::info!(
                millis = started.elapsed().as_millis() as u64,
                resident_bytes = database.resident_bytes(),
                "YPIR+SP precomputation done"
            );
        }
    }
    Ok(directory)
}

/// Loads a snapshot file and, when DP keys are given, refuses it unless one of them signed it.
/// The signature is checked on the header, before the payload is read.
pub fn load_checked(path: &Path, dp_keys: Option<&DpKeys>) -> Result<Snapshot, ServerError> {
    load_rising(path, dp_keys, None)
}

/// [`load_checked`], also refusing (from the header) an epoch not above `serving`, if given.
fn load_rising(
    path: &Path,
    dp_keys: Option<&DpKeys>,
    serving: Option<u64>,
) -> Result<Snapshot, ServerError> {
    Snapshot::load_verified(path, |header: &SnapshotHeader| {
        if let Some(keys) = dp_keys {
            header
                .verify_signature(keys)
                .map_err(|reason| ServerError::Refused {
                    path: path.to_path_buf(),
                    reason,
                })?;
        }
        match serving {
            Some(serving) if header.epoch <= serving => Err(ServerError::EpochNotRising {
                path: path.to_path_buf(),
                epoch: header.epoch,
                serving,
            }),
            _ => Ok(()),
        }
    })
}

/// How long a reload waits for the snapshot replaced last time to be freed by the requests still
/// answering on it, beyond the request timeout.
const RETIRE_GRACE: Duration = Duration::from_secs(10);

impl Reloader {
    /// A reloader for `service`, reading `path` by default.
    pub fn new(service: DiscoveryService, path: PathBuf, dp_keys: Option<DpKeys>) -> Self {
        Self {
            service,
            path,
            shards: None,
            dp_keys: dp_keys.map(Arc::new),
            lock: Arc::default(),
        }
    }

    /// This reloader for a sharded directory: `path` is its manifest, and each reload loads
    /// the new manifest and these of its shards, installed together.
    pub fn for_shards(self, shards: ShardSelection) -> Self {
        Self {
            shards: Some(shards),
            ..self
        }
    }

    /// Loads `path` (or the default file), checks it and installs it. Returns the previous and
    /// the new epoch. On any failure the served snapshot is unchanged. A snapshot whose epoch
    /// is not above the served one is refused (see [`Reloader::reload_forced`]).
    pub async fn reload(&self, path: Option<PathBuf>) -> Result<(u64, u64), ServerError> {
        self.reload_with(path, false).await
    }

    /// [`Reloader::reload`], installing the snapshot whatever its epoch (a deliberate rollback).
    pub async fn reload_forced(&self, path: Option<PathBuf>) -> Result<(u64, u64), ServerError> {
        self.reload_with(path, true).await
    }

    pub(crate) async fn reload_with(
        &self,
        path: Option<PathBuf>,
        force: bool,
    ) -> Result<(u64, u64), ServerError> {
        let this = self.clone();
        let (tx, rx) = oneshot::channel();
        // Not cancelled with the caller: see the module's notes.
        tokio::spawn(async move {
            let mut retired = this.lock.lock().await;
            if tx.is_closed() {
                tracing::info!("reload cancelled by its caller before it started; not loaded");
                return;
            }
            notify::reloading();
            let result = this.load_and_install(path, force, &mut retired).await;
            notify::ready(&format!("serving epoch {}", this.service.epoch()));
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| ServerError::Internal("the reload task ended without an answer".into()))?
    }

    /// Waits (bounded) until the snapshot the last reload replaced is freed.
    async fn wait_retired(&self, retired: &Retired) -> Result<(), ServerError> {
        let bound = self.service.options().request_timeout + RETIRE_GRACE;
        let start = Instant::now();
        while retired.in_use() {
            if start.elapsed() > bound {
                return Err(ServerError::PreviousSnapshotInUse(bound));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn load_and_install(
        &self,
        path: Option<PathBuf>,
        force: bool,
        retired: &mut Retired,
    ) -> Result<(u64, u64), ServerError> {
        let start = Instant::now();
        let path = path.unwrap_or_else(|| self.path.clone());
        let shown = path.display().to_string();
        let loaded = match self.wait_retired(retired).await {
            Ok(()) => {
                let keys = self.dp_keys.clone();
                let shards = self.shards.clone();
                // Only reloads install, one at a time: this stays the served epoch until then.
                let serving = (!force).then(|| self.service.epoch());
                tokio::task::spawn_blocking(move || {
                    load_served(&path, shards.as_ref(), keys.as_deref(), serving)
                })
                .await
                .map_err(|e| ServerError::Internal(format!("reload task: {e}")))
                .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        let snapshot = match loaded {
            Ok(s) => s,
            Err(e) => {
                self.service.reload_failed();
                if matches!(e, ServerError::EpochNotRising { .. }) {
                    self.service.reload_epoch_refused();
                }
                tracing::error!(file = %shown, error = %e, "reload refused; still serving the old snapshot");
                return Err(e);
            }
        };
        let previous = self.service.epoch();
        match self.service.install_retiring(snapshot) {
            Ok(old) => *retired = old,
            Err(e) => {
                self.service.reload_failed();
                return Err(e);
            }
        }
        self.service.record_load(start.elapsed());
        let epoch = self.service.epoch();
        let seconds = start.elapsed().as_secs_f64();
        if epoch <= previous {
            tracing::warn!(
                file = %shown,
                previous,
                epoch,
                seconds,
                "forced reload to an epoch not above the previous one: clients holding the old \
                 configuration fail their lookups until they fetch it again"
            );
        } else {
            tracing::info!(file = %shown, previous, epoch, seconds, "reloaded");
        }
        Ok((previous, epoch))
    }
}

/// The snapshot to load when the process starts. It loads on a thread of its own (a runtime
/// thread would stall health checks; a blocking-pool task would hold up the exit of a process
/// stopped while loading), logging its progress.
pub(crate) struct Loading {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// For a sharded directory (`path` is its manifest): the shards to load.
    pub(crate) shards: Option<ShardSelection>,
    pub(crate) dp_keys: Option<DpKeys>,
    #[cfg(feature = "test-hooks")]
    pub(crate) hold: Option<std::sync::mpsc::Receiver<()>>,
}

impl Loading {
    /// Loads and checks the snapshot (the DP signature with the keys); returns it with the
    /// keys and the time it took.
    pub(crate) async fn load(self) -> Result<(Directory, Option<DpKeys>, Duration), ServerError> {
        let Self {
            path,
            bytes,
            shards,
            dp_keys,
            #[cfg(feature = "test-hooks")]
            hold,
        } = self;
        tracing::info!(
            file = %path.display(),
            mib = bytes >> 20,
            "loading the snapshot"
        );
        notify::status("loading the snapshot");
        let (tx, mut rx) = oneshot::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("pir-load".into())
            .spawn(move || {
                #[cfg(feature = "test-hooks")]
                if let Some(hold) = hold {
                    let _ = hold.recv();
                }
                let start = Instant::now();
                let loaded = load_served(&path, shards.as_ref(), dp_keys.as_ref(), None);
                let _ = tx.send(loaded.map(|s| (s, dp_keys, start.elapsed())));
            })
            .map_err(|e| ServerError::io("starting the loading thread", e))?;
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        let loaded = loop {
            tokio::select! {
                loaded = &mut rx => break loaded,
                _ = tick.tick() => tracing::info!(
                    file = %shown,
                    seconds = start.elapsed().as_secs(),
                    "still loading the snapshot"
                ),
            }
        };
        let (directory, dp_keys, took) =
            loaded.map_err(|_| ServerError::Internal("the loading thread panicked".into()))??;
        tracing::info!(
            epoch = directory.epoch(),
            mappings = directory.mapping_count(),
            shards = ?directory.shards.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            sharded = directory.manifest.is_some(),
            seconds = took.as_secs_f64(),
            "snapshot loaded"
        );
        Ok((directory, dp_keys, took))
    }
}
