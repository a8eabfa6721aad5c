//! The `pir.v1.Admin` gRPC service (hot reload) on its own listener, for requests carrying the
//! admin bearer token.
//!
//! ```text
//! Admin.Reload(path) ─ authorization: Bearer TOKEN? ─ no: UNAUTHENTICATED
//!                                                   └ yes: Reloader::reload(path or default)
//! ```

use std::{future::Future, path::PathBuf};

use pir_proto::v1::{
    ReloadRequest, ReloadResponse,
    admin_server::{Admin, AdminServer},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Server};

use crate::{error::ServerError, reload::Reloader};

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
