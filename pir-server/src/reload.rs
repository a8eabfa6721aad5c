//! Hot reload: swap in a new snapshot without a restart (SIGHUP, or the token-protected Admin
//! RPC on its own listener).
//!
//! ```text
//! SIGHUP ─────────────┐
//! Admin.Reload(path) ─┴─▶ Reloader::reload ─ load + check (+ DP signature) ─▶ service.install
//!                                         └─ any failure: logged, refused, old one keeps serving
//! ```

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
};

use pir_core::{Snapshot, TrustStore};
use pir_proto::v1::{
    ReloadRequest, ReloadResponse,
    admin_server::{Admin, AdminServer},
};
use tokio::{net::TcpListener, sync::Mutex};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Server};

use crate::{error::ServerError, service::DiscoveryService};

/// Loads snapshot files, checks them, and installs them into a running service.
#[derive(Clone)]
pub struct Reloader {
    service: DiscoveryService,
    path: PathBuf,
    dp_keys: Option<Arc<TrustStore>>,
    // One reload at a time: each holds a whole database in memory while loading.
    lock: Arc<Mutex<()>>,
}

/// Loads a snapshot file and, when DP keys are given, refuses it unless one of them signed it.
pub fn load_checked(path: &Path, dp_keys: Option<&TrustStore>) -> Result<Snapshot, ServerError> {
    let snapshot = Snapshot::load(path)?;
    if let Some(keys) = dp_keys {
        snapshot
            .header()
            .verify_signature(keys)
            .map_err(|e| ServerError::Refused(format!("{}: {e}", path.display())))?;
    }
    Ok(snapshot)
}

impl Reloader {
    /// A reloader for `service`, reading `path` by default.
    pub fn new(service: DiscoveryService, path: PathBuf, dp_keys: Option<TrustStore>) -> Self {
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

#[tonic::async_trait]
impl Admin for Reloader {
    async fn reload(
        &self,
        req: Request<ReloadRequest>,
    ) -> Result<Response<ReloadResponse>, Status> {
        let path = req.into_inner().path;
        let path = (!path.is_empty()).then(|| PathBuf::from(path));
        let (previous_epoch, epoch) = Reloader::reload(self, path).await?;
        Ok(Response::new(ReloadResponse {
            previous_epoch,
            epoch,
        }))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the Admin service on `listener`, for requests carrying `authorization: Bearer TOKEN`.
pub async fn serve_admin(
    reloader: Reloader,
    token: String,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    if token.len() < 16 {
        return Err(ServerError::Usage(
            "the admin token must be at least 16 characters".into(),
        ));
    }
    let expected = format!("Bearer {token}");
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("admin token required"))
        }
    };
    Server::builder()
        .add_service(AdminServer::with_interceptor(reloader, check))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
