//! The `pir.v1.Admin` gRPC service (hot reload) on its own listener, for requests carrying the
//! admin bearer token; reflection there lists only it.
//!
//! ```text
//! Admin.Reload(path, force) ─ authorization: Bearer TOKEN? ─ no: UNAUTHENTICATED
//!                                        └ yes: Reloader::reload_with(path or default, force)
//! reflection (v1, v1alpha): pir.v1.Admin, no token needed (the schema is public)
//! ```

use std::{future::Future, path::PathBuf, sync::Arc};

use pir_proto::v1::{
    ReloadRequest, ReloadResponse,
    admin_server::{Admin, AdminServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, server::NamedService, service::Routes};

use crate::{
    descriptors::NoFile,
    error::ServerError,
    listener::{self, Fixed, Limits, Protocol},
    options::TransportOptions,
    reflection,
    reload::Reloader,
};

#[tonic::async_trait]
impl Admin for Reloader {
    async fn reload(
        &self,
        req: Request<ReloadRequest>,
    ) -> Result<Response<ReloadResponse>, Status> {
        let ReloadRequest { path, force } = req.into_inner();
        let path = (!path.is_empty()).then(|| PathBuf::from(path));
        if force {
            tracing::warn!(file = ?path, "forced reload asked: the epoch is not checked");
        }
        let (previous_epoch, epoch) = self.reload_with(path, force).await?;
        Ok(Response::new(ReloadResponse {
            previous_epoch,
            epoch,
        }))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin bearer token, checked long enough when made.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// The shortest token accepted, bytes.
    pub const MIN_LEN: usize = 16;

    /// The token, or `None` if it is shorter than [`AdminToken::MIN_LEN`].
    pub fn new(token: String) -> Option<Self> {
        (token.len() >= Self::MIN_LEN).then_some(Self(token))
    }
}

/// Never shows the secret.
impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Serves the Admin service on `listener`, for requests carrying `authorization: Bearer TOKEN`.
pub async fn serve_admin(
    reloader: Reloader,
    token: AdminToken,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let transport = TransportOptions::default();
    let limits = Limits::new(
        &transport,
        transport.connection_cap(NoFile::current().soft_or_max()),
    );
    serve_admin_bounded(reloader, token, listener, limits, shutdown).await
}

/// The largest Admin request body (a path).
const MAX_BODY: usize = 64 << 10;

/// [`serve_admin`] under the process's connection `limits`.
pub(crate) async fn serve_admin_bounded(
    reloader: Reloader,
    token: AdminToken,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let expected = format!("Bearer {}", token.0);
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(req)
        } else {
            Err(ServerError::AdminTokenRequired.into())
        }
    };
    let (reflection_v1, reflection_v1alpha) =
        reflection::services(&[<AdminServer<Reloader> as NamedService>::NAME])?;
    let routes = Routes::new(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AdminServer::with_interceptor(reloader, check))
        .prepare();
    listener::serve(
        "admin",
        listener,
        None,
        Protocol::Grpc,
        limits,
        Arc::new(Fixed(MAX_BODY)),
        routes,
        shutdown,
    )
    .await
}
