//! Hot reload: swap in a new snapshot without a restart (SIGHUP, or the token-protected Admin
//! RPC on its own listener, in `admin.rs`).
//!
//! ```text
//! SIGHUP ─────────────┐
//! Admin.Reload(path) ─┴─▶ Reloader::reload ─ load + check (+ DP signature) ─▶ service.install
//!                                         └─ any failure: logged, counted, refused, old one
//!                                            keeps serving
//! ```
//!
//! systemd hears `RELOADING=1` when a reload starts and `READY=1` when it ends, either way.
//! [`Loading`] is the first load, at start, with progress in the log.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use pir_core::{DpKeys, Snapshot};
use tokio::sync::{Mutex, oneshot};

use crate::{error::ServerError, notify, service::DiscoveryService};

/// Loads snapshot files, checks them, and installs them into a running service.
#[derive(Clone)]
pub struct Reloader {
    service: DiscoveryService,
    path: PathBuf,
    dp_keys: Option<Arc<DpKeys>>,
    // One reload at a time: each holds a whole database in memory while loading.
    lock: Arc<Mutex<()>>,
}

/// Loads a snapshot file and, when DP keys are given, refuses it unless one of them signed it.
pub fn load_checked(path: &Path, dp_keys: Option<&DpKeys>) -> Result<Snapshot, ServerError> {
    let snapshot = Snapshot::load(path)?;
    if let Some(keys) = dp_keys {
        snapshot
            .header()
            .verify_signature(keys)
            .map_err(|reason| ServerError::Refused {
                path: path.to_path_buf(),
                reason,
            })?;
    }
    Ok(snapshot)
}

impl Reloader {
    /// A reloader for `service`, reading `path` by default.
    pub fn new(service: DiscoveryService, path: PathBuf, dp_keys: Option<DpKeys>) -> Self {
        Self {
            service,
            path,
            dp_keys: dp_keys.map(Arc::new),
            lock: Arc::default(),
        }
    }

    /// Loads `path` (or the default file), checks it and installs it. Returns the previous and
    /// the new epoch. On any failure the served snapshot is unchanged.
    pub async fn reload(&self, path: Option<PathBuf>) -> Result<(u64, u64), ServerError> {
        let _one_at_a_time = self.lock.lock().await;
        notify::reloading();
        let result = self.load_and_install(path).await;
        notify::ready(&format!("serving epoch {}", self.service.epoch()));
        result
    }

    async fn load_and_install(&self, path: Option<PathBuf>) -> Result<(u64, u64), ServerError> {
        let start = Instant::now();
        let path = path.unwrap_or_else(|| self.path.clone());
        let keys = self.dp_keys.clone();
        let shown = path.display().to_string();
        let result = tokio::task::spawn_blocking(move || load_checked(&path, keys.as_deref()))
            .await
            .map_err(|e| ServerError::Internal(format!("reload task: {e}")))
            .and_then(|r| r);
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                self.service.reload_failed();
                tracing::error!(file = %shown, error = %e, "reload refused; still serving the old snapshot");
                return Err(e);
            }
        };
        let previous = self.service.epoch();
        if let Err(e) = self.service.install(snapshot) {
            self.service.reload_failed();
            return Err(e);
        }
        self.service.record_load(start.elapsed());
        let epoch = self.service.epoch();
        let seconds = start.elapsed().as_secs_f64();
        if epoch == previous {
            tracing::warn!(
                file = %shown,
                epoch,
                seconds,
                "reloaded, but the epoch is unchanged: is this the file you meant to swap in?"
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
    pub(crate) dp_keys: Option<DpKeys>,
    #[cfg(feature = "test-hooks")]
    pub(crate) hold: Option<std::sync::mpsc::Receiver<()>>,
}

impl Loading {
    /// Loads and checks the snapshot (the DP signature with the keys); returns it with the
    /// keys and the time it took.
    pub(crate) async fn load(self) -> Result<(Snapshot, Option<DpKeys>, Duration), ServerError> {
        let Self {
            path,
            bytes,
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
                let loaded = load_checked(&path, dp_keys.as_ref());
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
        let (snapshot, dp_keys, took) =
            loaded.map_err(|_| ServerError::Internal("the loading thread panicked".into()))??;
        let h = snapshot.header();
        tracing::info!(
            epoch = h.epoch,
            mappings = h.mapping_count,
            items = h.scheme.num_items(),
            signed = h.signature.is_some(),
            seconds = took.as_secs_f64(),
            "snapshot loaded"
        );
        Ok((snapshot, dp_keys, took))
    }
}
