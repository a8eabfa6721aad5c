//! The server's Prometheus metrics registry (served over HTTP by `http.rs`), with the process's
//! own metrics (`procstat.rs`) and `pir_build_info` added to every rendering.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder, core::Collector, proto::MetricFamily,
};

use crate::procstat::ProcStat;

/// The server's metrics, in their own registry (several servers may share a process).
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) lookups: IntCounter,
    /// OPRF evaluations answered (each one CPI a client can locate).
    pub(crate) evaluations: IntCounter,
    pub(crate) answer_seconds: Histogram,
    pub(crate) in_progress: IntGauge,
    pub(crate) batch_queries: Histogram,
    pub(crate) batch_splits: IntCounter,
    pub(crate) rejections: IntCounterVec,
    /// Discovery requests handled (GetConfig aside), by method and outcome (`ok`, `refused`):
    /// which replicas a client registered with, which it queried.
    pub(crate) requests: IntCounterVec,
    pub(crate) key_cache_entries: IntGauge,
    pub(crate) key_cache_bytes: IntGauge,
    pub(crate) epoch: IntGauge,
    pub(crate) limit_refusals: IntCounterVec,
    pub(crate) load_seconds: Gauge,
    pub(crate) reload_failures: IntCounter,
    /// Reloads refused because the epoch did not rise (also counted in `reload_failures`).
    pub(crate) reload_epoch_refusals: IntCounter,
}

impl Metrics {
    /// Adds metrics kept elsewhere (the key store's) to this registry.
    pub(crate) fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let lookups = IntCounter::new("pir_lookups_total", "PIR queries answered")?;
        let evaluations = IntCounter::new(
            "pir_evaluations_total",
            "OPRF evaluations answered (blinded CPIs evaluated; refusals are in \
             pir_limit_refusals_total as evaluation_key_rate, evaluation_peer_rate, \
             global_evaluation_rate, evaluate_mac)",
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        let answer_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pir_answer_seconds",
                "Time to answer one Query request (all its queries), waiting in the queue included",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 12)?),
        )?;
        let in_progress = IntGauge::new(
            "pir_answers_in_progress",
            "Queries queued or being answered (the bounded queue's depth, in queries)",
        )?;
        let batch_queries = Histogram::with_opts(
            HistogramOpts::new(
                "pir_batch_queries",
                "Queries answered together in one pass over the database (one or more requests)",
            )
            .buckets(prometheus::exponential_buckets(1.0, 2.0, 8)?),
        )?;
        let batch_splits = IntCounter::new(
            "pir_batch_splits_total",
            "Batches that failed and were answered again in halves, to fail only the faulty request",
        )?;
        let rejections = IntCounterVec::new(
            Opts::new("pir_rejections_total", "Requests refused, by reason"),
            &["reason"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "pir_requests_total",
                "Discovery requests handled (RegisterKeys, RenewKeys, Evaluate, Query), by method \
                 and outcome (ok, refused)",
            ),
            &["method", "outcome"],
        )?;
        let key_cache_entries =
            IntGauge::new("pir_key_cache_entries", "Registered client key sets held")?;
        let key_cache_bytes = IntGauge::new(
            "pir_key_cache_bytes",
            "Estimated memory of registered client keys",
        )?;
        let epoch = IntGauge::new("pir_snapshot_epoch", "Epoch of the snapshot being served")?;
        let limit_refusals = IntCounterVec::new(
            Opts::new(
                "pir_limit_refusals_total",
                "Requests refused by a limit, by the limit: key_rate, peer_rate, \
                 registration_rate, global_registration_rate, eviction_rate, query_mac, pending, \
                 queries_per_request, message_size, key_cache, request_timeout, \
                 evaluation_key_rate, evaluation_peer_rate, global_evaluation_rate, evaluate_mac",
            ),
            &["limit"],
        )?;
        let load_seconds = Gauge::new(
            "pir_snapshot_load_seconds",
            "Seconds the last snapshot load took (at start or on reload), checks included",
        )?;
        let reload_failures = IntCounter::new(
            "pir_reload_failures_total",
            "Reloads refused (the file did not load or verify); the old snapshot kept serving",
        )?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(answer_seconds.clone()))?;
        registry.register(Box::new(in_progress.clone()))?;
        registry.register(Box::new(batch_queries.clone()))?;
        registry.register(Box::new(batch_splits.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(key_cache_entries.clone()))?;
        registry.register(Box::new(key_cache_bytes.clone()))?;
        registry.register(Box::new(epoch.clone()))?;
        registry.register(Box::new(limit_refusals.clone()))?;
        registry.register(Box::new(load_seconds.clone()))?;
        let reload_epoch_refusals = IntCounter::new(
            "pir_reload_epoch_refusals_total",
            "Reloads refused because the snapshot's epoch was not above the serving one (a \
             rollback, or the same epoch rebuilt); also counted in pir_reload_failures_total",
        )?;
        registry.register(Box::new(reload_failures.clone()))?;
        registry.register(Box::new(reload_epoch_refusals.clone()))?;
        Ok(Self {
            registry,
            lookups,
            evaluations,
            answer_seconds,
            in_progress,
            batch_queries,
            batch_splits,
            rejections,
            requests,
            key_cache_entries,
            key_cache_bytes,
            epoch,
            limit_refusals,
            load_seconds,
            reload_failures,
            reload_epoch_refusals,
        })
    }

    /// Counts a Discovery request of `method` (`RegisterKeys`, ...) that was answered or not.
    pub(crate) fn handled(&self, method: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.requests.with_label_values(&[method, outcome]).inc();
    }

    pub(crate) fn reject(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }

    /// Counts a request refused by `limit` (a label of `pir_limit_refusals_total`).
    pub(crate) fn refused_by(&self, limit: &str) {
        self.limit_refusals.with_label_values(&[limit]).inc();
    }

    /// The Prometheus text exposition of every metric, the process's included.
    pub(crate) fn render(&self) -> String {
        render(self.registry.gather())
    }
}

/// The metrics of a process with no service yet (loading its snapshot): the process's own.
pub(crate) fn render_process_only() -> String {
    render(Vec::new())
}

/// `families`, then the process's metrics and `pir_build_info`, as Prometheus text.
fn render(mut families: Vec<MetricFamily>) -> String {
    families.extend(ProcStat::read().families());
    families.extend(build_info());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    // Encoding metric families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `pir_build_info{version="..."} 1`.
fn build_info() -> Vec<MetricFamily> {
    let opts = Opts::new(
        "pir_build_info",
        "The running pir-server's version; always 1",
    )
    .const_label("version", env!("CARGO_PKG_VERSION"));
    match IntGauge::with_opts(opts) {
        Ok(g) => {
            g.set(1);
            g.collect()
        }
        Err(_) => Vec::new(),
    }
}
