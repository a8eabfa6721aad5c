//! A bounded load test on loopback: honest clients look up while hostile ones send garbage and
//! oversized messages. Every honest lookup answers correctly or is refused with
//! RESOURCE_EXHAUSTED; memory stays bounded; the server is healthy at the end.
//!
//! `PIR_LOAD_SECS=60 cargo test --release -p pir-server --test load -- --nocapture` for a longer
//! run; CI runs the short form.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pir_client::{ClientOptions, PirClient};
use pir_core::testing::{issuer, trust};
use pir_core::{Cpi, MappingFields, Snapshot};
use pir_proto::v1::{QueryRequest, RegisterKeysRequest, discovery_client::DiscoveryClient};
use pir_server::{RunningServer, ServeOptions};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tonic::Code;

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:user{i}@example.org")).unwrap()
}

fn msp(i: usize) -> String {
    format!("msp{}.example", i % 7)
}

const PRESENT: usize = 400;

/// How the tally records an oversized registration refused by a reset of its stream
/// (CANCELLED or UNKNOWN at the client): a code this server never sends, so that either from
/// any other request still fails the test.
const OVERSIZED_RESET: Code = Code::DataLoss;

fn snapshot() -> Snapshot {
    let mappings = (0..PRESENT)
        .map(|i| {
            MappingFields::new(cpi(i), &msp(i), None, None, 0, u64::MAX)
                .unwrap()
                .sign(&issuer(), None)
                .unwrap()
        })
        .collect();
    common::small_snapshot(mappings, 1, 8)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn current_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Default)]
struct Tally {
    honest_ok: u64,
    honest_exhausted: u64,
    honest_other: Vec<String>,
    hostile: BTreeMap<String, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_clients_are_served_while_hostile_ones_are_refused() {
    let secs: u64 = std::env::var("PIR_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let opts = ServeOptions {
        max_pending_answers: 3,
        max_message_bytes: 4 << 20,
        key_cache_bytes: 400 << 20,
        ..ServeOptions::default()
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(snapshot(), addr, opts, Some(pir_core::testing::oprf_key()))
        .await
        .unwrap();
    let url = server.url();
    let rss_before = current_rss_mib();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(secs);

    let mut tasks = Vec::new();
    for c in 0..4u64 {
        let (url, tally) = (url.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c);
            let mut client =
                PirClient::connect(&url, ClientOptions::new(trust()).allowing_custom_params())
                    .await
                    .unwrap();
            while Instant::now() < deadline {
                // Half present, half absent CPIs.
                let i = rng.gen_range(0..2 * PRESENT);
                let result = client.lookup(&cpi(i)).await;
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(o) => {
                        let got = o.result.msps();
                        let want = if i < PRESENT { vec![msp(i)] } else { vec![] };
                        if got == want {
                            t.honest_ok += 1;
                        } else {
                            t.honest_other
                                .push(format!("wrong answer for {i}: {got:?}"));
                        }
                    }
                    // Refused by the Query or by the Evaluate before it (which the client
                    // reports as its batch's evaluation failing, the status inside).
                    Err(e)
                        if e.status().map(tonic::Status::code) == Some(Code::ResourceExhausted) =>
                    {
                        t.honest_exhausted += 1;
                    }
                    Err(e) => t.honest_other.push(e.to_string()),
                }
            }
        }));
    }
    for h in 0..2u64 {
        let (url, tally) = (url.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(100 + h);
            let mut rpc = DiscoveryClient::connect(url.clone())
                .await
                .unwrap()
                .max_encoding_message_size(64 << 20);
            while Instant::now() < deadline {
                let code = match rng.gen_range(0..4) {
                    0 => {
                        let n = rng.gen_range(0..20_000);
                        let garbage: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                        rpc.query(QueryRequest {
                            key_id: (0..32).map(|_| rng.r#gen()).collect(),
                            epoch: 1,
                            queries: vec![garbage],
                            ..Default::default()
                        })
                        .await
                        .err()
                        .map(|s| s.code())
                    }
                    1 => rpc
                        .register_keys(RegisterKeysRequest {
                            public_keys: vec![rng.r#gen(); rng.gen_range(0..100_000)],
                            ..Default::default()
                        })
                        .await
                        .err()
                        .map(|s| s.code()),
                    // Over the body limit: refused while it is still being sent, which the
                    // client sees as RESOURCE_EXHAUSTED or, when the server's reset overtakes
                    // the status, as CANCELLED or UNKNOWN (a transport error while sending;
                    // counted apart, from this request only). On a connection of its own, so
                    // that a reset reaches no other request of the test.
                    2 => DiscoveryClient::connect(url.clone())
                        .await
                        .unwrap()
                        .max_encoding_message_size(64 << 20)
                        .register_keys(RegisterKeysRequest {
                            public_keys: vec![0xff; 6 << 20],
                            ..Default::default()
                        })
                        .await
                        .err()
                        .map(|s| s.code())
                        .map(|c| {
                            if [Code::Cancelled, Code::Unknown].contains(&c) {
                                OVERSIZED_RESET
                            } else {
                                c
                            }
                        }),
                    _ => rpc
                        .query(QueryRequest {
                            key_id: vec![1; 7],
                            epoch: rng.r#gen(),
                            queries: vec![vec![0; 3]; rng.gen_range(0..100)],
                            ..Default::default()
                        })
                        .await
                        .err()
                        .map(|s| s.code()),
                };
                let label = code.map_or("accepted".to_string(), |c| format!("{c:?}"));
                *tally.lock().unwrap().hostile.entry(label).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let t = std::mem::take(&mut *tally.lock().unwrap());
    let hostile: u64 = t.hostile.values().sum();
    let rss_after = current_rss_mib();
    #[allow(clippy::print_stdout)]
    let report = || {
        println!(
            "load test, {secs} s: {} honest lookups answered correctly, {} refused with \
         RESOURCE_EXHAUSTED, {} other outcomes; {hostile} hostile requests refused by code {:?}; \
         server metrics rejections: {}; RSS {rss_before:.0} -> {rss_after:.0} MiB, peak {:.0} MiB",
            t.honest_ok,
            t.honest_exhausted,
            t.honest_other.len(),
            t.hostile,
            server
                .service()
                .metrics_text()
                .lines()
                .filter(|l| l.starts_with("pir_rejections_total{"))
                .collect::<Vec<_>>()
                .join(", "),
            peak_rss_mib()
        )
    };
    report();
    assert!(t.honest_other.is_empty(), "{:?}", t.honest_other);
    assert!(t.honest_ok > 0);
    assert!(!t.hostile.contains_key("accepted"), "{:?}", t.hostile);
    for code in t.hostile.keys() {
        assert!(
            [
                "InvalidArgument",
                "FailedPrecondition",
                "ResourceExhausted",
                "DataLoss"
            ]
            .contains(&code.as_str()),
            "{code}"
        );
    }
    // Bounded: a few hundred MiB of keys at most, whatever the hostile traffic did.
    assert!(
        rss_after - rss_before < 600.0,
        "{rss_before} -> {rss_after}"
    );

    // Healthy at the end.
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");
    server.stop().await.unwrap();
}
