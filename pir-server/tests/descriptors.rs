//! Descriptor exhaustion against the release binary: started with `ulimit -n 64` (through
//! `prlimit`), flooded with more idle TCP connections than it has descriptors, the server
//! stays idle itself (no accept loop spinning), says why in its log, and serves a lookup once
//! the connections are gone. Once with the connection cap derived from the limit (the cap is
//! reached first), once with a cap above it (accept fails with EMFILE and backs off).

mod common;

use std::time::Duration;

use common::binary::{Served, strict};
use pir_client::{ClientOptions, PirClient};
use pir_core::{Cpi, testing::trust};

/// Floods `server` with 80 idle connections; the server's CPU time over 2 s, in ticks.
async fn flood(server: &Served) -> (Vec<std::net::TcpStream>, u64) {
    let mut idle = Vec::new();
    for _ in 0..80 {
        // The kernel completes the handshake from its listen queue even when the server does
        // not accept.
        idle.push(std::net::TcpStream::connect(server.addr).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    (idle, server.cpu_ticks() - before)
}

/// A lookup of Bob succeeds (within a few retries while the server accepts the queue).
async fn lookup(server: &Served) {
    let url = format!("http://{}", server.addr);
    for attempt in 0.. {
        let result = async {
            let mut client =
                PirClient::connect(&url, ClientOptions::new(trust()).allowing_custom_params())
                    .await?;
            client
                .lookup(&Cpi::parse("mailto:bob@example.org").unwrap())
                .await
        };
        match tokio::time::timeout(Duration::from_secs(10), result).await {
            Ok(Ok(outcome)) => {
                assert_eq!(outcome.result.mappings[0].fields.msp, "chat.example");
                return;
            }
            failed if attempt < 20 => {
                eprintln!("lookup attempt {attempt}: {:?}", failed.map(|r| r.err()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            failed => panic!("no lookup: {:?}\n{}", failed.map(|r| r.err()), server.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_server_backs_off_logs_and_recovers() {
    let limit = ["prlimit", "--nofile=64:64"];
    for (cap, warning) in [
        ("auto", "connection cap reached"),
        ("200", "out of file descriptors"),
    ] {
        let server = Served::start(&[("PIR_MAX_CONNECTIONS", cap)], &limit).await;
        let (idle, ticks) = flood(&server).await;
        let log = server.log();
        eprintln!(
            "--max-connections {cap}, RLIMIT_NOFILE 64, 80 idle connections: {ticks} ticks \
             ({} ms) of CPU in 2 s; warned: {}",
            ticks * 10,
            log.contains(warning)
        );
        if strict() {
            assert!(ticks < 40, "{ticks} ticks of CPU in 2 s");
            assert!(log.contains(warning), "no {warning:?} in\n{log}");
        }
        drop(idle);
        lookup(&server).await;
    }
}
