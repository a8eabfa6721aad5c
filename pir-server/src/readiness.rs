//! Whether the process is ready, in one place, for everyone who asks: gRPC health
//! (`grpc.health.v1`), HTTP `/readyz` and `/healthz`, and the main port's Discovery service
//! (which answers UNAVAILABLE until a snapshot is loaded).
//!
//! ```text
//!            bind ──▶ Loading ──loaded(service)──▶ Ready ──stopping()──▶ ShuttingDown
//!                                                    │
//!                          the answering thread died └──▶ AnsweringStopped (for good)
//! health "" and pir.v1.Discovery: SERVING only when Ready; /readyz: 200 only when Ready;
//! /healthz: 200 unless the answering thread died (a restart is the only cure).
//! ```

use std::{
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use pir_proto::v1::discovery_server::DiscoveryServer;
use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};

use crate::service::DiscoveryService;

/// Why the process is not ready; displays as the `/readyz` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// The snapshot is still loading.
    Loading,
    /// The answering thread died (a bug): no Query can be answered.
    AnsweringStopped,
    /// SIGTERM or SIGINT arrived: draining.
    ShuttingDown,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loading => "loading the snapshot",
            Self::AnsweringStopped => "the answering thread has stopped; restart the process",
            Self::ShuttingDown => "shutting down",
        })
    }
}

struct Inner {
    service: OnceLock<DiscoveryService>,
    stopping: AtomicBool,
    reporter: HealthReporter,
}

/// The process's readiness and its gRPC health reporter; cheap to clone (shared state).
#[derive(Clone)]
pub(crate) struct Readiness {
    inner: Arc<Inner>,
}

const DISCOVERY: &str = <DiscoveryServer<DiscoveryService> as NamedService>::NAME;

impl Readiness {
    /// A process that is loading; health says NOT_SERVING until [`Readiness::loaded`].
    pub(crate) async fn loading() -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                service: OnceLock::new(),
                stopping: AtomicBool::new(false),
                reporter: HealthReporter::new(),
            }),
        };
        this.publish().await;
        this
    }

    /// A process ready with `service` (the library's servers, which start loaded).
    pub(crate) async fn serving(service: DiscoveryService) -> Self {
        let this = Self::loading().await;
        this.loaded(service).await;
        this
    }

    /// The service, once the snapshot is loaded.
    pub(crate) fn service(&self) -> Option<&DiscoveryService> {
        self.inner.service.get()
    }

    /// The snapshot is loaded and `service` answers: health turns SERVING.
    pub(crate) async fn loaded(&self, service: DiscoveryService) {
        let _ = self.inner.service.set(service);
        self.publish().await;
    }

    /// Stopping: health turns NOT_SERVING at once, before any connection is closed.
    pub(crate) async fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.publish().await;
    }

    /// Ready to answer lookups, or why not (`/readyz`, gRPC health).
    pub(crate) fn ready(&self) -> Result<(), NotReady> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(NotReady::ShuttingDown);
        }
        match self.service() {
            None => Err(NotReady::Loading),
            Some(s) if !s.answering() => Err(NotReady::AnsweringStopped),
            Some(_) => Ok(()),
        }
    }

    /// Alive (`/healthz`): everything but a dead answering thread can still become ready.
    pub(crate) fn live(&self) -> Result<(), NotReady> {
        match self.service() {
            Some(s) if !s.answering() => Err(NotReady::AnsweringStopped),
            _ => Ok(()),
        }
    }

    /// A `grpc.health.v1.Health` service reporting this readiness.
    pub(crate) fn health_server(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(
            self.inner.reporter.clone(),
        ))
    }

    /// Sets the health statuses from [`Readiness::ready`].
    async fn publish(&self) {
        let status = match self.ready() {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        };
        for name in ["", DISCOVERY] {
            self.inner.reporter.set_service_status(name, status).await;
        }
    }

    /// Follows the answering thread, once a second, for as long as the caller polls it: if a
    /// bug ever kills it, health turns NOT_SERVING so load balancers stop sending lookups here.
    pub(crate) async fn watch(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // Published once: a health watcher hears of each change, not of each tick.
            if self.live().is_err() {
                tracing::error!("the answering thread has stopped; health is now NOT_SERVING");
                self.publish().await;
                return;
            }
        }
    }
}
