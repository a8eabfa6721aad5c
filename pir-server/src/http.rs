//! The plain-HTTP endpoint on `--metrics-listen`: Prometheus metrics at `GET /metrics`, and the
//! probes Kubernetes (or any supervisor) can reach even when the gRPC port speaks only TLS.
//!
//! ```text
//! GET /metrics  Prometheus text: the service's metrics once loaded, the process's always
//! GET /healthz  200 "ok" while the process can serve or become ready (liveness)
//! GET /readyz   200 "ready" when the snapshot is loaded, the answering thread alive and the
//!               process not stopping; else 503 with the reason (readiness)
//! ```

use std::{future::Future, sync::Arc};

use axum::{http::StatusCode, response::IntoResponse};
use tokio::net::TcpListener;

use crate::{
    descriptors::NoFile,
    error::ServerError,
    listener::{self, Fixed, Limits, Protocol},
    metrics,
    readiness::{NotReady, Readiness},
    service::DiscoveryService,
};

/// The largest request body here (only GETs are served).
const MAX_BODY: usize = 16 << 10;

/// Serves `GET /metrics`, `/healthz` and `/readyz` for `service` on `listener` until
/// `shutdown` resolves.
pub async fn serve_metrics(
    service: DiscoveryService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let transport = &service.options().transport;
    let limits = Limits::new(
        transport,
        transport.connection_cap(NoFile::current().soft_or_max()),
    );
    serve_http(
        Readiness::serving(service).await,
        limits,
        listener,
        shutdown,
    )
    .await
}

/// [`serve_metrics`] for a process that may still be loading its snapshot.
pub(crate) async fn serve_http(
    readiness: Readiness,
    limits: Limits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (metrics, live, ready) = (readiness.clone(), readiness.clone(), readiness);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = match metrics.service() {
                    Some(service) => service.metrics_text(),
                    None => metrics::render_process_only(),
                };
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(move || {
                let state = live.live();
                async move { probe(state, "ok") }
            }),
        )
        .route(
            "/readyz",
            axum::routing::get(move || {
                let state = ready.ready();
                async move { probe(state, "ready") }
            }),
        );
    listener::serve(
        "metrics",
        listener,
        None,
        Protocol::Http1,
        limits,
        Arc::new(Fixed(MAX_BODY)),
        app,
        shutdown,
    )
    .await
}

/// 200 with `ok`, or 503 with why not.
fn probe(state: Result<(), NotReady>, ok: &'static str) -> axum::response::Response {
    match state {
        Ok(()) => (StatusCode::OK, format!("{ok}\n")).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}
