//! A load generator: concurrent clients looking up CPIs (given ones, or random ones) for a
//! fixed time.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pir_core::Cpi;
use serde::Serialize;

use crate::{ClientOptions, PirClient, Result};

/// What a load run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Lookups answered.
    pub lookups: u64,
    /// Answered lookups that found verified mappings.
    pub found: u64,
    /// Lookups that failed (any error, including rate limits).
    pub errors: u64,
    /// The first error met, if any: what to fix when every lookup failed.
    pub first_error: Option<String>,
    /// Answered lookups per second over the run.
    pub lookups_per_sec: f64,
    /// Median latency of answered lookups, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of answered lookups, ms.
    pub p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A random CPI, present or not: lookups cost the same either way.
fn random_cpi(state: &mut u64) -> Cpi {
    // xorshift64*: a dependency-free generator is enough to spread CPIs over buckets.
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
    Cpi::parse(&format!("mailto:load{x:016x}@bench.example"))
        .unwrap_or_else(|_| unreachable!("the address is well-formed by construction"))
}

/// Runs `concurrency` clients looking up random CPIs (almost all absent) against `url` for
/// `duration`. All clients share the keys in `options.key_file` (generated and registered once
/// if absent), so the run does not spend the server's registration budget.
pub async fn run(
    url: &str,
    options: ClientOptions,
    concurrency: usize,
    duration: Duration,
) -> Result<BenchReport> {
    run_with_cpis(url, options, concurrency, duration, Arc::from(Vec::new())).await
}

/// [`run`], looking up `cpis` (each client walks the list from its own offset, round and
/// round) instead of random CPIs when the list is not empty. With the CPIs of the served
/// mappings, every lookup also decrypts and verifies found mappings, as real clients do.
pub async fn run_with_cpis(
    url: &str,
    options: ClientOptions,
    concurrency: usize,
    duration: Duration,
    cpis: Arc<[Cpi]>,
) -> Result<BenchReport> {
    // The first connection creates (or reuses) the shared keys; the others reuse them.
    let first = PirClient::connect(url, options.clone()).await?;
    let mut clients = vec![first];
    for _ in 1..concurrency.max(1) {
        clients.push(PirClient::connect(url, options.clone()).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let cpis = cpis.clone();
            tokio::spawn(async move {
                let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
                // Clients start spread over the list, so they do not ask for the same CPIs.
                let mut next = i * cpis.len() / concurrency.max(1);
                let (mut ok, mut found, mut errors) = (Vec::new(), 0u64, 0u64);
                let mut first_error = None;
                while Instant::now() < deadline {
                    let cpi = match cpis.get(next % cpis.len().max(1)) {
                        Some(cpi) => cpi.clone(),
                        None => random_cpi(&mut state),
                    };
                    next += 1;
                    let t = Instant::now();
                    match client.lookup(&cpi).await {
                        Ok(outcome) => {
                            ok.push(t.elapsed().as_secs_f64() * 1e3);
                            found += u64::from(outcome.result.found());
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "lookup failed");
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (ok, found, errors, first_error)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut found, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let (ok, f, e, first) = t
            .await
            .map_err(|e| crate::ClientError::Internal(format!("bench task: {e}")))?;
        latencies.extend(ok);
        found += f;
        errors += e;
        first_error = first_error.or(first);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(BenchReport {
        lookups: latencies.len() as u64,
        found,
        errors,
        first_error,
        lookups_per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 51.0);
        assert_eq!(super::percentile(&v, 99.0), 99.0);
        assert_eq!(super::percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn random_cpis_differ() {
        let mut s = 1;
        assert_ne!(super::random_cpi(&mut s), super::random_cpi(&mut s));
    }
}
