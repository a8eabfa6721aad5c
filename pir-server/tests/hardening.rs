//! Hostile input and overload: panics contained, rate limits, the bounded queue, deadlines,
//! oversized messages, TLS, and the metrics that count it all.

mod common;

use std::{net::SocketAddr, time::Duration};

use pir_client::{ClientOptions, PirClient};
use pir_core::testing::{issuer, trust};
use pir_core::{ClientKeys, Cpi, Snapshot};
use pir_proto::v1::{QueryRequest, RegisterKeysRequest, discovery_client::DiscoveryClient};
use pir_server::{Identity, RateLimit, RunningServer, ServeOptions};
use tonic::{Code, transport::Channel};

use common::connect as rpc;

fn snapshot() -> Snapshot {
    common::bob_snapshot(&issuer(), 1, 1)
}

async fn start(opts: ServeOptions) -> RunningServer {
    common::start_on(snapshot(), opts).await
}

/// Registers fresh keys; returns them and a valid query for Bob.
async fn register(rpc: &mut DiscoveryClient<Channel>) -> (ClientKeys, Vec<u8>) {
    let (client, _) = common::register(rpc).await;
    let q = client
        .query(&common::evaluated("mailto:bob@example.org"))
        .unwrap()
        .query()
        .to_vec();
    (client.keys().unwrap().clone(), q)
}

fn query(keys: &ClientKeys, queries: Vec<Vec<u8>>) -> QueryRequest {
    QueryRequest::authenticated(keys, 1, queries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_scheme_is_internal_for_that_request_only() {
    let marker = b"\xde\xad\xbe\xef".to_vec();
    let server = common::start_panicking_on(snapshot(), &marker).await;
    let mut rpc = rpc(&server).await;
    let (keys, good) = register(&mut rpc).await;
    let mut poisoned = good.clone();
    poisoned[..4].copy_from_slice(&marker);
    let err = rpc.query(query(&keys, vec![poisoned])).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    // The process and the next requests are fine.
    let ok = rpc
        .query(query(&keys, vec![good]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.answers.len(), 1);
    let text = server.service().metrics_text();
    assert!(
        text.contains("pir_rejections_total{reason=\"internal\"} 1"),
        "{text}"
    );
    assert!(text.contains("pir_answers_in_progress 0"), "{text}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_key_and_per_peer() {
    let server = start(ServeOptions {
        per_key_rate: Some(RateLimit {
            burst: 3,
            per_hour: 1,
        }),
        per_peer_rate: Some(RateLimit {
            burst: 5,
            per_hour: 1,
        }),
        per_peer_registrations: Some(RateLimit {
            burst: 2,
            per_hour: 1,
        }),
        ..ServeOptions::default()
    })
    .await;
    let mut rpc = rpc(&server).await;
    let (a, qa) = register(&mut rpc).await;
    // Three for key a, then a's bucket is empty.
    rpc.query(query(&a, vec![qa.clone(), qa.clone()]))
        .await
        .unwrap();
    rpc.query(query(&a, vec![qa.clone()])).await.unwrap();
    let err = rpc.query(query(&a, vec![qa.clone()])).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("key"), "{}", err.message());
    // Key b still has its own three, but the peer has only one of its five left.
    let (b, qb) = register(&mut rpc).await;
    let err = rpc
        .query(query(&b, vec![qb.clone(), qb.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("peer"), "{}", err.message());
    // A third registration from this peer is refused.
    let scheme = *common::config(&mut rpc)
        .await
        .lookup()
        .scheme()
        .spiral()
        .unwrap();
    let c = ClientKeys::generate(&scheme).unwrap();
    let err = rpc
        .register_keys(RegisterKeysRequest::for_keys(&c))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let text = server.service().metrics_text();
    assert!(
        text.contains("pir_rejections_total{reason=\"rate_limited\"} 3"),
        "{text}"
    );
    // Which limit refused each.
    for limit in ["key_rate", "peer_rate", "registration_rate"] {
        let line = format!("pir_limit_refusals_total{{limit=\"{limit}\"}} 1");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_deadline_and_oversized_messages() {
    let server = start(ServeOptions {
        max_pending_answers: 1,
        max_message_bytes: 4 << 20,
        ..ServeOptions::default()
    })
    .await;
    let mut rpc1 = rpc(&server).await;
    let (keys, q) = register(&mut rpc1).await;
    // One slow request holds the only slot; the next is refused at once, not queued.
    let slow = {
        let mut rpc = rpc1.clone();
        let req = query(&keys, vec![q.clone(); 24]);
        tokio::spawn(async move { rpc.query(req).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = rpc1.query(query(&keys, vec![q.clone()])).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(slow.await.unwrap().unwrap().into_inner().answers.len(), 24);

    // Larger than the message limit: RESOURCE_EXHAUSTED, as gRPC specifies.
    let err = rpc1
        .register_keys(RegisterKeysRequest {
            public_keys: vec![0; 5 << 20],
            ..RegisterKeysRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let text = server.service().metrics_text();
    for limit in ["pending", "message_size"] {
        let line = format!("pir_limit_refusals_total{{limit=\"{limit}\"}} 1");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    server.stop().await.unwrap();

    let server = start(ServeOptions {
        request_timeout: Duration::from_millis(1),
        ..ServeOptions::default()
    })
    .await;
    let mut rpc2 = rpc(&server).await;
    let (keys, q) = register(&mut rpc2).await;
    let err = rpc2
        .query(query(&keys, vec![q.clone(); 8]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let text = server.service().metrics_text();
    assert!(
        text.contains("pir_limit_refusals_total{limit=\"request_timeout\"} 1"),
        "{text}"
    );
    server.stop().await.unwrap();
}

fn certificates() -> (String, Identity) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (
        ca.pem(),
        Identity::from_pem(leaf.pem(), leaf_key.serialize_pem()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end() {
    let (ca_pem, identity) = certificates();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start_tls(
        snapshot(),
        addr,
        ServeOptions::default(),
        Some(pir_core::testing::oprf_key()),
        Some(identity),
    )
    .await
    .unwrap();
    assert!(server.url().starts_with("https://localhost:"));

    let options = ClientOptions {
        tls_ca: Some(ca.clone()),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    let mut client = PirClient::connect(&server.url(), options).await.unwrap();
    let outcome = client
        .lookup(&Cpi::parse("mailto:bob@example.org").unwrap())
        .await
        .unwrap();
    assert_eq!(outcome.result.mappings[0].fields.msp, "chat.example");

    // Without the CA the certificate is not trusted; plaintext does not speak to TLS.
    assert!(
        PirClient::connect(
            &server.url(),
            ClientOptions::new(trust()).allowing_custom_params()
        )
        .await
        .is_err()
    );
    let plain = format!("http://{}", server.addr());
    assert!(
        PirClient::connect(&plain, ClientOptions::new(trust()).allowing_custom_params())
            .await
            .is_err()
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let server = start(ServeOptions::default()).await;
    let mut client = PirClient::connect(
        &server.url(),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        client
            .lookup(&Cpi::parse("mailto:bob@example.org").unwrap())
            .await
            .unwrap();
    }
    let mut rpc = rpc(&server).await;
    let err = rpc
        .query(QueryRequest {
            key_id: vec![0; 32],
            epoch: 9,
            queries: vec![vec![0]],
            ..QueryRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pir_server::serve_metrics(
        server.service().clone(),
        listener,
        async {
            let _ = rx.await;
        },
    ));
    let text = common::scrape_metrics(addr).await;
    for needle in [
        "200 OK",
        "pir_lookups_total 2",
        "pir_answer_seconds_count 2",
        "pir_rejections_total{reason=\"stale_epoch\"} 1",
        "pir_key_cache_entries 1",
        "pir_snapshot_epoch 1",
        "pir_answers_in_progress 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    server.stop().await.unwrap();
}
