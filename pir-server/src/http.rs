//! The plain-HTTP endpoint: Prometheus metrics at `GET /metrics` on `--metrics-listen`.

use std::future::Future;

use tokio::net::TcpListener;

use crate::{error::ServerError, service::DiscoveryService};

/// Serves `GET /metrics` for `service` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    service: DiscoveryService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let service = service.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    service.metrics_text(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServerError::io("serving metrics", e))
}
