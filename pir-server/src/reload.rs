//! Hot reload: swap in a new snapshot without a restart (SIGHUP, or the token-protected Admin
//! RPC on its own listener, in `admin.rs`).
//!
//! ```text
//! SIGHUP ─────────────┐
//! Admin.Reload(path) ─┴─▶ Reloader::reload ─ load + check (+ DP signature) ─▶ service.install
//!                                         └─ any failure: logged, refused, old one keeps serving
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use pir_core::{DpKeys, Snapshot};
use tokio::sync::Mutex;

use crate::{error::ServerError, service::DiscoveryService};

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
                tracing::error!(file = %shown, error = %e, "reload refused; still serving the old snapshot");
                return Err(e);
            }
        };
        let previous = self.service.epoch();
        self.service.install(snapshot)?;
        let epoch = self.service.epoch();
        tracing::info!(file = %shown, previous, epoch, "reloaded");
        Ok((previous, epoch))
    }
}
