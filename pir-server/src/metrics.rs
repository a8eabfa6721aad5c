//! The server's Prometheus metrics registry (served over HTTP by `http.rs`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The server's metrics, in their own registry (several servers may share a process).
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) lookups: IntCounter,
    pub(crate) answer_seconds: Histogram,
    pub(crate) in_progress: IntGauge,
    pub(crate) batch_queries: Histogram,
    pub(crate) batch_splits: IntCounter,
    pub(crate) rejections: IntCounterVec,
    pub(crate) key_cache_entries: IntGauge,
    pub(crate) key_cache_bytes: IntGauge,
    pub(crate) epoch: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let lookups = IntCounter::new("pir_lookups_total", "PIR queries answered")?;
        let answer_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "pir_answer_seconds",
                "Time to answer one Query request (all its queries), waiting in the queue included",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 12)?),
        )?;
        let in_progress = IntGauge::new(
            "pir_answers_in_progress",
            "Query requests queued or being answered (the bounded queue's depth)",
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
        let key_cache_entries =
            IntGauge::new("pir_key_cache_entries", "Registered client key sets held")?;
        let key_cache_bytes = IntGauge::new(
            "pir_key_cache_bytes",
            "Estimated memory of registered client keys",
        )?;
        let epoch = IntGauge::new("pir_snapshot_epoch", "Epoch of the snapshot being served")?;
        registry.register(Box::new(lookups.clone()))?;
        registry.register(Box::new(answer_seconds.clone()))?;
        registry.register(Box::new(in_progress.clone()))?;
        registry.register(Box::new(batch_queries.clone()))?;
        registry.register(Box::new(batch_splits.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(key_cache_entries.clone()))?;
        registry.register(Box::new(key_cache_bytes.clone()))?;
        registry.register(Box::new(epoch.clone()))?;
        Ok(Self {
            registry,
            lookups,
            answer_seconds,
            in_progress,
            batch_queries,
            batch_splits,
            rejections,
            key_cache_entries,
            key_cache_bytes,
            epoch,
        })
    }

    pub(crate) fn reject(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
