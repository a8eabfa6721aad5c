//! `Discovery/Evaluate`, the DP's oblivious PRF on the server (issue 12, layout v2): lookups end
//! to end through it (present, absent and opted-out CPIs costing the same requests), the split
//! between a server holding the OPRF key and a PIR host without it, the evaluation limits and
//! refusals, and snapshots keyed by another OPRF key refused at start and on reload.

mod common;

use common::{signals, unlimited};

use std::{path::Path, time::Duration};

use pir_client::{ClientOptions, PirClient};
use pir_core::{
    Cpi, LookupClient, Mapping, Snapshot,
    oprf::{Evaluated, OprfKey},
    testing::{self, NOW, trust},
};
use pir_proto::{
    EvaluationIn, REASON_KEY, REASON_UNKNOWN_KEY,
    v1::{
        EvaluateRequest, EvaluateResponse, GetConfigRequest, QueryRequest, ReloadRequest,
        admin_client::AdminClient, discovery_client::DiscoveryClient,
    },
};
use pir_server::{
    RateLimit, RunningServer, ServeOptions, ServerError,
    process::{Process, ProcessError, ServeConfig},
};
use prost::Message;
use tonic::{Code, Request, Status, transport::Channel};

/// Three MSPs for Alice.
const ALICE: &str = "tel:+14155550100";
/// One MSP for Bob.
const BOB: &str = "mailto:bob@example.org";
/// In no snapshot.
const ABSENT: &str = "mailto:nobody@example.org";
/// Opted out (its mapping, given to the build, is withheld), by [`opt_out`].
const OPTED: &str = "tel:+14155550199";

/// The opt-out of [`OPTED`], valid for ever (the client library looks up at the real time).
fn opt_out() -> pir_core::identity::OptOut {
    let o = testing::fixture_opt_out();
    assert_eq!(o.cpi, cpi(OPTED));
    o
}

fn cpi(text: &str) -> Cpi {
    Cpi::parse(text).unwrap()
}

fn mappings() -> Vec<Mapping> {
    let m = common::forever;
    vec![
        m(ALICE, "chat.example"),
        m(ALICE, "talk.example"),
        m(ALICE, "ring.example"),
        m(BOB, "mail.example"),
        m(OPTED, "chat.example"),
    ]
}

/// The small test shape with Alice, Bob and the opt-out, keyed by `oprf`, at `epoch`.
fn snapshot_keyed(oprf: &OprfKey, epoch: u64) -> Snapshot {
    let opts = pir_core::BuildOptions {
        salt: Some([epoch as u8; 32]),
        ..testing::build_options(testing::small_scheme(), epoch)
    };
    let input = pir_core::snapshot::BuildInput {
        mappings: mappings()
            .into_iter()
            .map(|m| pir_core::VerifiedMapping::new(m, &trust()).unwrap())
            .collect(),
        opt_outs: vec![pir_core::identity::VerifiedOptOut::new(opt_out(), &trust()).unwrap()],
    };
    Snapshot::build_verified(input, oprf, &opts, &|_, _| {})
        .unwrap()
        .0
}

/// [`snapshot_keyed`] under the fixture OPRF key, the one the servers here evaluate with.
fn snapshot(epoch: u64) -> Snapshot {
    snapshot_keyed(&testing::oprf_key(), epoch)
}

/// Another OPRF key than the fixture's.
fn other_key() -> OprfKey {
    OprfKey::derive(&[0x42; 32], b"another DP's OPRF key").unwrap()
}

/// A metric's value in the server's text, 0 when absent.
fn metric(server: &RunningServer, line: &str) -> f64 {
    let text = server.service().metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn refusals(server: &RunningServer, limit: &str) -> f64 {
    metric(
        server,
        &format!("pir_limit_refusals_total{{limit=\"{limit}\"}}"),
    )
}

fn reason(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(REASON_KEY)
        .and_then(|v| v.to_str().ok())
}

/// The MSPs of a lookup's result, sorted; `None` when the CPI opted out.
fn msps(result: &pir_core::LookupResult) -> Option<Vec<String>> {
    if result.opted_out() {
        assert!(result.mappings.is_empty(), "{result:?}");
        return None;
    }
    let mut msps: Vec<String> = result.msps().into_iter().map(String::from).collect();
    msps.sort();
    Some(msps)
}

/// What each CPI here must come back as.
fn expected(text: &str) -> Option<Vec<String>> {
    match text {
        ALICE => Some(vec![
            "chat.example".into(),
            "ring.example".into(),
            "talk.example".into(),
        ]),
        BOB => Some(vec!["mail.example".into()]),
        ABSENT => Some(vec![]),
        OPTED => None,
        other => panic!("no expectation for {other}"),
    }
}

/// `request` as if forwarded for `peer` by a trusted proxy (`x-forwarded-for`).
fn from(peer: &str, request: EvaluateRequest) -> Request<EvaluateRequest> {
    let mut req = Request::new(request);
    req.metadata_mut()
        .insert("x-forwarded-for", peer.parse().unwrap());
    req
}

/// `n` freshly blinded elements of Alice, as a client would send them.
fn elements(client: &LookupClient, n: usize) -> Vec<[u8; 32]> {
    client
        .blind(&vec![cpi(ALICE); n], &mut rand::rngs::OsRng)
        .unwrap()
        .iter()
        .map(|b| *b.element())
        .collect()
}

/// An authenticated Evaluate request of `client` for `n` elements.
fn evaluate_request(client: &LookupClient, n: usize) -> EvaluateRequest {
    EvaluateRequest::authenticated(client.keys().unwrap(), &elements(client, n))
}

/// Queries `evaluated` in one request and decodes the answers, in order.
async fn query(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    evaluated: Vec<Evaluated>,
) -> Vec<pir_core::LookupResult> {
    let pending: Vec<_> = evaluated.iter().map(|e| client.query(e).unwrap()).collect();
    let request = QueryRequest::authenticated(
        client.keys().unwrap(),
        client.config().epoch(),
        pending.iter().map(|p| p.query().to_vec()).collect(),
    );
    let answers = rpc.query(request).await.unwrap().into_inner().answers;
    assert_eq!(answers.len(), pending.len());
    pending
        .into_iter()
        .zip(&answers)
        .map(|(p, a)| client.decode(p, a, NOW).unwrap())
        .collect()
}

/// The bytes of each message of one lookup: Evaluate request and response, Query request and
/// response.
#[derive(Debug, PartialEq, Eq)]
struct Sizes([usize; 4]);

/// One lookup of `text` over raw gRPC, one Evaluate and one Query of one element each: its
/// result and the size of every message.
async fn raw_lookup(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    text: &str,
) -> (pir_core::LookupResult, Sizes) {
    let blinded = client.blind(&[cpi(text)], &mut rand::rngs::OsRng).unwrap();
    let request = EvaluateRequest::authenticated(client.keys().unwrap(), &[*blinded[0].element()]);
    let evaluate_sent = request.encoded_len();
    let response: EvaluateResponse = rpc.evaluate(request).await.unwrap().into_inner();
    let evaluate_received = response.encoded_len();
    let evaluation = EvaluationIn::parse(response, 1).unwrap();
    // The proof is checked against the configuration's OPRF key: under any other it fails.
    assert!(
        pir_core::oprf::finalize(&blinded, evaluation.evaluation(), &other_key().public()).is_err()
    );
    let evaluated = client.finalize(&blinded, evaluation.evaluation()).unwrap();
    // What the server evaluated is the DP's OPRF of the CPI, whatever the blind.
    assert_eq!(
        evaluated[0].output(),
        testing::evaluate(&cpi(text)).output(),
        "{text}"
    );
    let pending = client.query(&evaluated[0]).unwrap();
    let request = QueryRequest::authenticated(
        client.keys().unwrap(),
        client.config().epoch(),
        vec![pending.query().to_vec()],
    );
    let query_sent = request.encoded_len();
    let response = rpc.query(request).await.unwrap().into_inner();
    let query_received = response.encoded_len();
    assert_eq!(response.answers.len(), 1);
    let result = client.decode(pending, &response.answers[0], NOW).unwrap();
    let sizes = Sizes([evaluate_sent, evaluate_received, query_sent, query_received]);
    (result, sizes)
}

/// (a) Blind, Evaluate, finalize against the configuration's OPRF key, query, decode: Alice's
/// three MSPs, Bob's one, nothing for an absent CPI, an opt-out for the opted-out one. Each
/// costs one Evaluate and one Query of one element, of the same sizes both ways, over raw gRPC
/// and through the client library alike; a batch of all four answers in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_through_evaluate_cost_the_same_whatever_the_cpi() {
    let server = common::start_on(snapshot(1), ServeOptions::default()).await;
    let mut rpc = common::connect(&server).await;
    let (client, _) = common::register(&mut rpc).await;
    // The configuration names the key the server evaluates with.
    assert_eq!(
        client.config().layout().oprf_key,
        testing::oprf_key().public()
    );
    let config = rpc
        .get_config(GetConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.layout.unwrap().oprf_public_key,
        testing::oprf_key().public().to_bytes().to_vec()
    );

    let cases = [ALICE, BOB, ABSENT, OPTED];
    let mut sizes = Vec::new();
    for text in cases {
        let (before_evaluations, before_lookups) = (
            metric(&server, "pir_evaluations_total"),
            metric(&server, "pir_lookups_total"),
        );
        let (result, size) = raw_lookup(&mut rpc, &client, text).await;
        assert_eq!(msps(&result), expected(text), "{text}");
        if text == OPTED {
            // The DP's signed opt-out itself, verified.
            assert_eq!(result.opt_out, Some(opt_out()));
        }
        assert_eq!(
            metric(&server, "pir_evaluations_total") - before_evaluations,
            1.0
        );
        assert_eq!(metric(&server, "pir_lookups_total") - before_lookups, 1.0);
        sizes.push(size);
    }
    assert!(
        sizes.iter().all(|s| *s == sizes[0]),
        "message sizes differ by CPI: {sizes:?}"
    );

    // A batch: one Evaluate of four elements, one Query of four, in order.
    let evaluated = common::evaluate(&mut rpc, &client, &cases.map(cpi)).await;
    let results = query(&mut rpc, &client, evaluated).await;
    for (text, result) in cases.iter().zip(&results) {
        assert_eq!(result.cpi, cpi(text));
        assert_eq!(msps(result), expected(text), "{text}");
    }

    // The client library: each lookup one evaluation and one query, the same bytes each way.
    let mut library = PirClient::connect(
        &server.url(),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap();
    let mut wire = Vec::new();
    for text in cases {
        let (before_evaluations, before_lookups) = (
            metric(&server, "pir_evaluations_total"),
            metric(&server, "pir_lookups_total"),
        );
        let outcome = library.lookup(&cpi(text)).await.unwrap();
        assert_eq!(msps(&outcome.result), expected(text), "{text}");
        assert_eq!(
            metric(&server, "pir_evaluations_total") - before_evaluations,
            1.0,
            "{text}"
        );
        assert_eq!(
            metric(&server, "pir_lookups_total") - before_lookups,
            1.0,
            "{text}"
        );
        wire.push((outcome.bytes_sent, outcome.bytes_received));
    }
    assert!(
        wire.iter().all(|w| *w == wire[0]),
        "bytes differ by CPI: {wire:?}"
    );
    // Every element evaluated is counted: 4 single lookups, a batch of 4, 4 library lookups.
    assert_eq!(metric(&server, "pir_evaluations_total"), 12.0);
    server.stop().await.unwrap();
}

/// (b) A server started without the OPRF key is a PIR host only: Evaluate is UNIMPLEMENTED
/// (pointing at the DP's evaluator), whatever the request, but it answers queries. Evaluated
/// at a server that holds the key and serves the same snapshot, queried at the host, every CPI
/// comes back as from the evaluator itself; the client library does the same when told where
/// the evaluator is, and says to give it when not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_the_oprf_key_answers_queries_but_no_evaluations() {
    let bytes = testing::file_bytes(&snapshot(1));
    let same = || testing::read_bytes(&bytes).unwrap();
    let evaluator = common::start_on(same(), ServeOptions::default()).await;
    let host = common::start_keyed_on(same(), ServeOptions::default(), None).await;
    let (mut at_evaluator, mut at_host) = (
        common::connect(&evaluator).await,
        common::connect(&host).await,
    );
    let get_config = |mut rpc: DiscoveryClient<Channel>| async move {
        rpc.get_config(GetConfigRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(
        get_config(at_host.clone()).await,
        get_config(at_evaluator.clone()).await,
        "one snapshot, one configuration"
    );
    let (client, _) = common::register(&mut at_host).await;
    at_evaluator
        .register_keys(pir_proto::v1::RegisterKeysRequest::for_keys(
            client.keys().unwrap(),
        ))
        .await
        .unwrap();

    for request in [evaluate_request(&client, 1), EvaluateRequest::default()] {
        let err = at_host.evaluate(request).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        assert!(err.message().contains("--evaluator"), "{err:?}");
    }

    let cases = [ALICE, BOB, ABSENT, OPTED];
    let evaluated = common::evaluate(&mut at_evaluator, &client, &cases.map(cpi)).await;
    let from_host = query(&mut at_host, &client, evaluated.clone()).await;
    let from_evaluator = query(&mut at_evaluator, &client, evaluated).await;
    assert_eq!(from_host, from_evaluator);
    for (text, result) in cases.iter().zip(&from_host) {
        assert_eq!(msps(result), expected(text), "{text}");
    }
    assert_eq!(metric(&host, "pir_evaluations_total"), 0.0);
    assert_eq!(metric(&host, "pir_lookups_total"), 4.0);
    assert_eq!(
        metric(&host, "pir_rejections_total{reason=\"no_evaluator\"}"),
        2.0
    );
    assert_eq!(metric(&evaluator, "pir_evaluations_total"), 4.0);

    let options = ClientOptions::new(trust()).allowing_custom_params();
    let mut split = PirClient::connect(
        &host.url(),
        ClientOptions {
            evaluator: Some(evaluator.url()),
            ..options.clone()
        },
    )
    .await
    .unwrap();
    for text in cases {
        let outcome = split.lookup(&cpi(text)).await.unwrap();
        assert_eq!(msps(&outcome.result), expected(text), "{text}");
    }
    assert_eq!(metric(&host, "pir_evaluations_total"), 0.0);
    assert_eq!(metric(&evaluator, "pir_evaluations_total"), 8.0);
    let mut alone = PirClient::connect(&host.url(), options).await.unwrap();
    let err = alone.lookup(&cpi(ALICE)).await.unwrap_err();
    assert!(err.to_string().contains("give --evaluator URL"), "{err}");
    host.stop().await.unwrap();
    evaluator.stop().await.unwrap();
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// (b) `pir-server serve` without `--oprf-key` holds no key material and serves: its lookups
/// are evaluated by a server that holds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_binary_without_an_oprf_key_is_a_pir_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.pirsnap");
    snapshot(1).write(&path).unwrap();
    let evaluator = common::start_on(snapshot(1), ServeOptions::default()).await;
    let listen = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pir-server"))
        .args(["serve", "--snapshot"])
        .arg(&path)
        .args(["--listen", &listen.to_string()])
        .env_remove("PIR_OPRF_KEY")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{listen}");
    let mut served = false;
    for _ in 0..400 {
        if common::serving_epoch(url.clone()).await == Some(1) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served, "the host did not start");

    let mut rpc = DiscoveryClient::connect(url.clone()).await.unwrap();
    let (client, _) = common::register(&mut rpc).await;
    let err = rpc
        .evaluate(evaluate_request(&client, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    let options = ClientOptions {
        evaluator: Some(evaluator.url()),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    let mut split = PirClient::connect(&url, options).await.unwrap();
    for text in [ALICE, OPTED] {
        let outcome = split.lookup(&cpi(text)).await.unwrap();
        assert_eq!(msps(&outcome.result), expected(text), "{text}");
    }
    child.kill().await.unwrap();
    evaluator.stop().await.unwrap();
}

/// (c) Evaluations of one key: a request that does not fit what is left is refused with
/// RESOURCE_EXHAUSTED (and a time to retry) and spends nothing; another key has its own; a
/// request larger than the burst is told it never fits. Counted as `evaluation_key_rate`;
/// queries keep their own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_are_limited_per_key() {
    let server = common::start_on(
        snapshot(1),
        ServeOptions {
            per_key_evaluations: Some(RateLimit {
                burst: 3,
                per_hour: 1,
            }),
            ..unlimited()
        },
    )
    .await;
    let mut rpc = common::connect(&server).await;
    let (a, _) = common::register(&mut rpc).await;
    let (b, _) = common::register(&mut rpc).await;

    rpc.evaluate(evaluate_request(&a, 2)).await.unwrap();
    let err = rpc.evaluate(evaluate_request(&a, 2)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("rate limit of this key (OPRF evaluations) exceeded; retry in"),
        "{err:?}"
    );
    assert!(err.metadata().get(pir_proto::RETRY_AFTER_MS_KEY).is_some());
    // The refused request spent nothing: one is left, then none.
    rpc.evaluate(evaluate_request(&a, 1)).await.unwrap();
    let err = rpc.evaluate(evaluate_request(&a, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Another key, from the same peer, has its own three.
    rpc.evaluate(evaluate_request(&b, 3)).await.unwrap();
    let err = rpc.evaluate(evaluate_request(&b, 4)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("send fewer queries at once"),
        "{err:?}"
    );

    assert_eq!(refusals(&server, "evaluation_key_rate"), 3.0);
    assert_eq!(metric(&server, "pir_evaluations_total"), 6.0);
    // Queries are not evaluations: a's query budget is untouched.
    let results = query(&mut rpc, &a, vec![common::evaluated(BOB)]).await;
    assert_eq!(msps(&results[0]), expected(BOB));
    assert_eq!(refusals(&server, "key_rate"), 0.0);
    server.stop().await.unwrap();
}

/// (c) Evaluations from one peer network (through a trusted proxy, an IPv6 /64): its keys share
/// its budget; another network has its own. Counted as `evaluation_peer_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_are_limited_per_peer_network() {
    let server = common::start_on(
        snapshot(1),
        ServeOptions {
            per_peer_evaluations: Some(RateLimit {
                burst: 3,
                per_hour: 1,
            }),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()],
            ..unlimited()
        },
    )
    .await;
    let mut rpc = common::connect(&server).await;
    let (a, _) = common::register(&mut rpc).await;
    let (b, _) = common::register(&mut rpc).await;

    rpc.evaluate(from("2001:db8:1:2::1", evaluate_request(&a, 2)))
        .await
        .unwrap();
    // Another key, another address of the same /64: the network's one token left.
    let err = rpc
        .evaluate(from("2001:db8:1:2::ffff", evaluate_request(&b, 2)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("rate limit of this peer (OPRF evaluations) exceeded"),
        "{err:?}"
    );
    rpc.evaluate(from("2001:db8:1:3::1", evaluate_request(&b, 2)))
        .await
        .unwrap();
    rpc.evaluate(from("2001:db8:1:2::7", evaluate_request(&b, 1)))
        .await
        .unwrap();
    let err = rpc
        .evaluate(from("2001:db8:1:2::1", evaluate_request(&a, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    assert_eq!(refusals(&server, "evaluation_peer_rate"), 2.0);
    assert_eq!(refusals(&server, "evaluation_key_rate"), 0.0);
    assert_eq!(metric(&server, "pir_evaluations_total"), 5.0);
    server.stop().await.unwrap();
}

/// (c) Evaluations of all peers together: once the server's second is spent, a request from a
/// fresh network and key is refused too; a second later it passes. Counted as
/// `global_evaluation_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_are_limited_for_the_whole_server() {
    let server = common::start_on(
        snapshot(1),
        ServeOptions {
            global_evaluations_per_second: Some(3),
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..unlimited()
        },
    )
    .await;
    let mut rpc = common::connect(&server).await;
    let (a, _) = common::register(&mut rpc).await;
    let (b, _) = common::register(&mut rpc).await;

    rpc.evaluate(from("198.51.100.1", evaluate_request(&a, 3)))
        .await
        .unwrap();
    // Three elements need the whole bucket, a second's refill: refused however fast it refills.
    let err = rpc
        .evaluate(from("198.51.100.2", evaluate_request(&b, 3)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains(
            "rate limit of this server (OPRF evaluations from all peers) exceeded; retry in"
        ),
        "{err:?}"
    );
    assert_eq!(refusals(&server, "global_evaluation_rate"), 1.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rpc.evaluate(from("198.51.100.2", evaluate_request(&b, 3)))
        .await
        .unwrap();
    assert_eq!(metric(&server, "pir_evaluations_total"), 6.0);
    server.stop().await.unwrap();
}

/// Encodings of 32 bytes that are not ristretto255 elements a client could have blinded: above
/// the field's modulus, the modulus itself (0 if reduced), a negative field element, the
/// identity.
fn invalid_elements() -> Vec<[u8; 32]> {
    let mut modulus = [0xff; 32];
    modulus[0] = 0xed;
    modulus[31] = 0x7f;
    let mut negative = [0; 32];
    negative[0] = 1;
    vec![[0xff; 32], modulus, negative, [0; 32]]
}

/// (c) Every other refusal of Evaluate, each with its code, none evaluating anything: a wrong
/// MAC (flipped, over other elements, a query's MAC) is UNAUTHENTICATED and counted as
/// `evaluate_mac`; an unregistered key FAILED_PRECONDITION unknown-key; no element, an element
/// of 31 bytes, no MAC INVALID_ARGUMENT; 32 bytes that are no valid element INVALID_ARGUMENT,
/// naming it, while good requests sent beside them are evaluated; more elements than
/// `max_queries_per_request` RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_evaluate_request_is_refused_with_its_code() {
    let server = common::start_on(
        snapshot(1),
        ServeOptions {
            max_queries_per_request: 2,
            ..unlimited()
        },
    )
    .await;
    let mut rpc = common::connect(&server).await;
    let (client, _) = common::register(&mut rpc).await;
    let refused = {
        let rpc = rpc.clone();
        move |request: EvaluateRequest| {
            let mut rpc = rpc.clone();
            async move { rpc.evaluate(request).await.unwrap_err() }
        }
    };

    // The MAC.
    let mut flipped = evaluate_request(&client, 1);
    flipped.mac[0] ^= 1;
    let mut other_elements = evaluate_request(&client, 1);
    other_elements.blinded = vec![elements(&client, 1)[0].to_vec()];
    let mut query_mac = evaluate_request(&client, 1);
    query_mac.mac =
        QueryRequest::authenticated(client.keys().unwrap(), 0, query_mac.blinded.clone()).mac;
    for forged in [flipped, other_elements, query_mac] {
        let err = refused(forged).await;
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(
            err.message().contains("evaluation's mac does not verify"),
            "{err:?}"
        );
    }
    assert_eq!(refusals(&server, "evaluate_mac"), 3.0);
    assert_eq!(refusals(&server, "query_mac"), 0.0);

    // An unregistered key.
    let config = common::config(&mut rpc).await;
    let stranger = LookupClient::new(config.lookup().clone(), trust()).unwrap();
    let err = refused(evaluate_request(&stranger, 1)).await;
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(&err), Some(REASON_UNKNOWN_KEY));

    // Shapes.
    let mut short = evaluate_request(&client, 1);
    short.blinded[0].pop();
    let mut no_mac = evaluate_request(&client, 1);
    no_mac.mac.clear();
    let mut empty = evaluate_request(&client, 1);
    empty.blinded.clear();
    for (request, says) in [
        (short, "blinded element 0 is 31 bytes, expected 32"),
        (no_mac, "mac is 0 bytes"),
        (empty, "no blinded element"),
    ] {
        let err = refused(request).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(says), "{says}: {err:?}");
    }
    let err = refused(evaluate_request(&client, 3)).await;
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        err.message(),
        "3 blinded elements in one evaluation; at most 2"
    );
    assert_eq!(refusals(&server, "queries_per_request"), 1.0);
    assert_eq!(metric(&server, "pir_evaluations_total"), 0.0);

    // 32 bytes that are no element, alone or after a good one, sent between good requests:
    // refused, naming the element; the good ones are evaluated and their proofs hold.
    let mut tasks = Vec::new();
    for (i, bad) in invalid_elements().into_iter().enumerate() {
        let mut batch = elements(&client, 1);
        batch.push(bad);
        for (bad_batch, index) in [(vec![bad], 0), (batch, 1)] {
            let request = EvaluateRequest::authenticated(client.keys().unwrap(), &bad_batch);
            let mut rpc = rpc.clone();
            tasks.push(tokio::spawn(async move {
                let err = rpc.evaluate(request).await.unwrap_err();
                assert_eq!(err.code(), Code::InvalidArgument, "{i}: {err:?}");
                assert!(
                    err.message().contains(&format!(
                        "element {index} of the batch is not a valid ristretto255 element"
                    )),
                    "{i}: {err:?}"
                );
            }));
        }
        let mut rpc = rpc.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let evaluated = common::evaluate(&mut rpc, &client, &[cpi(BOB), cpi(ALICE)]).await;
            assert_eq!(evaluated[0].output(), testing::evaluate(&cpi(BOB)).output());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let good = invalid_elements().len() as f64;
    assert_eq!(metric(&server, "pir_evaluations_total"), 2.0 * good);
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"malformed\"}"),
        3.0 + 2.0 * good
    );
    // And the server goes on: a lookup through it.
    let evaluated = common::evaluate(&mut rpc, &client, &[cpi(ALICE)]).await;
    let results = query(&mut rpc, &client, evaluated).await;
    assert_eq!(msps(&results[0]), expected(ALICE));
    server.stop().await.unwrap();
}

/// Evaluates and queries Alice over `rpc` with fresh registered keys: her three MSPs.
async fn alice_is_found(rpc: &mut DiscoveryClient<Channel>) {
    let (client, _) = common::register(rpc).await;
    let evaluated = common::evaluate(rpc, &client, &[cpi(ALICE)]).await;
    let results = query(rpc, &client, evaluated).await;
    assert_eq!(msps(&results[0]), expected(ALICE));
}

/// The refusal of a snapshot keyed by [`other_key`] by a server evaluating with the fixture key.
fn is_key_mismatch(err: &ServerError) -> bool {
    matches!(
        err,
        ServerError::OprfKeyMismatch { snapshot, served }
            if *snapshot == other_key().public().to_string()
                && *served == testing::oprf_key().public().to_string()
    )
}

/// (d) In process: a server holding the OPRF key does not start on a snapshot keyed by another
/// key, and refuses one offered later (install, reload) with FAILED_PRECONDITION, naming both
/// keys, while the old snapshot keeps serving lookups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keyed_by_another_oprf_key_is_refused_at_start_install_and_reload() {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let err = RunningServer::start(
        snapshot_keyed(&other_key(), 1),
        addr,
        ServeOptions::default(),
        Some(testing::oprf_key()),
    )
    .await
    .err()
    .expect("refused at start");
    assert!(is_key_mismatch(&err), "{err}");

    let server = common::start_on(snapshot(1), ServeOptions::default()).await;
    let err = server
        .service()
        .install(snapshot_keyed(&other_key(), 2))
        .unwrap_err();
    assert!(is_key_mismatch(&err), "{err}");
    let status = Status::from(err);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("--oprf-key"), "{status:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.pirsnap");
    snapshot_keyed(&other_key(), 3).write(&path).unwrap();
    let reloader = pir_server::Reloader::new(server.service().clone(), path.clone(), None);
    let err = reloader.reload(Some(path.clone())).await.unwrap_err();
    assert!(is_key_mismatch(&err), "{err}");
    // Forcing is for epochs, not for keys.
    let err = reloader.reload_forced(Some(path)).await.unwrap_err();
    assert!(is_key_mismatch(&err), "{err}");

    assert_eq!(server.service().epoch(), 1);
    let mut rpc = common::connect(&server).await;
    alice_is_found(&mut rpc).await;
    // The right key's next epoch is taken.
    let good = dir.path().join("good.pirsnap");
    snapshot(4).write(&good).unwrap();
    assert_eq!(reloader.reload(Some(good)).await.unwrap(), (1, 4));
    alice_is_found(&mut rpc).await;
    server.stop().await.unwrap();
}

const TOKEN: &str = "0123456789abcdef-evaluate";

/// A serve process's configuration: `snapshot`, the OPRF key file `oprf_key`, the Admin
/// service and the metrics endpoint on free loopback ports.
fn serve_config(snapshot: &Path, oprf_key: &Path, token: &Path) -> ServeConfig {
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    ServeConfig {
        snapshot: snapshot.to_path_buf(),
        shards: None,
        listen: loopback,
        options: ServeOptions::default(),
        dp_pub: None,
        oprf_key: Some(oprf_key.to_path_buf()),
        admin_listen: loopback,
        admin_token_file: Some(token.to_path_buf()),
        metrics_listen: Some(loopback),
        tls: None,
        plaintext: false,
        pid_file: None,
        shutdown_delay: Duration::ZERO,
    }
}

/// (d) The serve process: started with an OPRF key that is not its snapshot's, it ends with the
/// refusal; serving, it refuses such a snapshot through Admin Reload (FAILED_PRECONDITION,
/// naming both keys) and through its reload signal, counts both, and keeps serving the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_process_refuses_a_snapshot_keyed_by_another_oprf_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let served = d.join("db.pirsnap");
    snapshot(1).write(&served).unwrap();
    let fixture_key = d.join(common::OPRF_KEY_FILE);
    common::write_oprf_key(&fixture_key);
    let wrong_key = d.join("other-oprf.key");
    testing::write_secret(&wrong_key, other_key().to_secret_text());
    let token = d.join("token");
    testing::write_secret(&token, format!("{TOKEN}\n"));

    // At start: the process ends with the refusal.
    let listening = Process::prepare(serve_config(&served, &wrong_key, &token))
        .unwrap()
        .bind()
        .await
        .unwrap();
    let (_stop, _reload, s) = signals();
    let err = tokio::time::timeout(Duration::from_secs(20), listening.run(s))
        .await
        .expect("a refused snapshot ends the process")
        .err()
        .unwrap();
    let ProcessError::Server(refusal) = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(refusal, ServerError::OprfKeyMismatch { served, .. }
            if *served == other_key().public().to_string()),
        "{err}"
    );

    // Serving with the right key: other-keyed snapshots are refused.
    let listening = Process::prepare(serve_config(&served, &fixture_key, &token))
        .unwrap()
        .bind()
        .await
        .unwrap();
    let (addr, admin, metrics) = (
        listening.addr(),
        listening.admin_addr().unwrap(),
        listening.metrics_addr().unwrap(),
    );
    let (stop, reload, s) = signals();
    let process = tokio::spawn(listening.run(s));
    let url = format!("http://{addr}");
    let mut up = false;
    for _ in 0..200 {
        if common::serving_epoch(url.clone()).await == Some(1) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "never served epoch 1");

    let other = d.join("other.pirsnap");
    snapshot_keyed(&other_key(), 2).write(&other).unwrap();
    let mut client = AdminClient::connect(format!("http://{admin}"))
        .await
        .unwrap();
    for force in [false, true] {
        let mut req = Request::new(ReloadRequest {
            path: other.display().to_string(),
            force,
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let err = client.reload(req).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        for key in [other_key().public(), testing::oprf_key().public()] {
            assert!(err.message().contains(&key.to_string()), "{err:?}");
        }
    }
    // The reload signal (SIGHUP) reads the served name, now pointing at such a snapshot.
    snapshot_keyed(&other_key(), 3).write(&served).unwrap();
    reload.send(()).await.unwrap();
    let mut failures = String::new();
    for _ in 0..200 {
        let text = common::scrape_metrics(metrics).await;
        failures = text
            .lines()
            .find(|l| l.starts_with("pir_reload_failures_total "))
            .unwrap_or_default()
            .to_owned();
        if failures == "pir_reload_failures_total 3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failures, "pir_reload_failures_total 3");
    assert_eq!(common::serving_epoch(url.clone()).await, Some(1));
    let mut rpc = DiscoveryClient::connect(url).await.unwrap();
    alice_is_found(&mut rpc).await;

    stop.send(()).unwrap();
    common::stopped(process).await;
}

/// An element that is no valid encoding is refused before any token is charged: requests of
/// invalid elements, however many, leave the key's whole budget for valid ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_elements_spend_no_evaluation_tokens() {
    let server = common::start_on(
        snapshot(1),
        ServeOptions {
            per_key_evaluations: Some(RateLimit {
                burst: 2,
                per_hour: 1,
            }),
            ..unlimited()
        },
    )
    .await;
    let mut rpc = common::connect(&server).await;
    let (client, _) = common::register(&mut rpc).await;
    for bad in invalid_elements() {
        for _ in 0..3 {
            let request = EvaluateRequest::authenticated(client.keys().unwrap(), &[bad, bad]);
            let err = rpc.evaluate(request).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
    }
    rpc.evaluate(evaluate_request(&client, 2)).await.unwrap();
    let err = rpc
        .evaluate(evaluate_request(&client, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(refusals(&server, "evaluation_key_rate"), 1.0);
}
