//! A YPIR+SP snapshot served by the real server on a loopback port: the client learns the
//! engine from GetConfig, registers nothing, looks up privately, and follows the server from one
//! engine to the other. Raw requests show what the server refuses, and that it keeps serving.

use std::net::SocketAddr;

use pir_client::{ClientOptions, PirClient};
use pir_core::testing::{issuer, oprf_key, trust};
use pir_core::{
    BuildOptions, Cpi, Engine, Mapping, MappingFields, Scheme, SchemeParams, Snapshot,
    pir::ypir::YpirParams,
};
use pir_proto::v1::{
    EvaluateRequest, GetConfigRequest, QueryRequest, RegisterKeysRequest,
    discovery_client::DiscoveryClient,
};
use pir_server::{RunningServer, ServeOptions};
use tonic::Code;

fn mapping(cpi: &str, msp: &str) -> Mapping {
    MappingFields::new(Cpi::parse(cpi).unwrap(), msp, None, None, 0, u64::MAX)
        .unwrap()
        .sign(&issuer(), None)
        .unwrap()
}

fn snapshot(epoch: u64, scheme: Scheme, bob_msp: &str) -> Snapshot {
    let mappings = vec![
        mapping("tel:+14155550100", "chat.example"),
        mapping("tel:+14155550100", "talk.example"),
        mapping("mailto:bob@example.org", bob_msp),
    ];
    let opts = BuildOptions {
        epoch,
        now: pir_core::unix_now(),
        salt: Some([epoch as u8; 32]),
        scheme: Some(scheme),
        engine: scheme.engine(),
        fill_percent: None,
    };
    Snapshot::build(mappings, &trust(), &oprf_key(), &opts)
        .unwrap()
        .0
}

fn ypir() -> Scheme {
    Scheme::YpirSp(YpirParams::new(11, 1).unwrap())
}

fn spiral() -> Scheme {
    Scheme::Spiral(SchemeParams::danger_test_only_small())
}

async fn start(scheme: Scheme) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(
        snapshot(1, scheme, "chat.example"),
        addr,
        ServeOptions::default(),
        Some(oprf_key()),
    )
    .await
    .unwrap()
}

async fn connect(server: &RunningServer) -> PirClient {
    PirClient::connect(
        &server.url(),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap()
}

fn msps(outcome: &pir_client::LookupOutcome) -> Vec<&str> {
    let mut v = outcome.result.msps();
    v.sort_unstable();
    v
}

fn cpi(s: &str) -> Cpi {
    Cpi::parse(s).unwrap()
}

#[tokio::test]
async fn lookups_without_keys() {
    let server = start(ypir()).await;
    let mut client = connect(&server).await;
    assert_eq!(client.config().lookup().scheme().engine(), Engine::YpirSp);
    assert_eq!(client.key_id(), None);
    let found = client.lookup(&cpi("tel:+1 415 555 0100")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    let missing = client.lookup(&cpi("tel:+14155550199")).await.unwrap();
    assert!(!missing.result.found());
    // Absent and present CPIs cost the same bytes; nothing was registered.
    assert_eq!(missing.bytes_sent, found.bytes_sent);
    assert_eq!(missing.bytes_received, found.bytes_received);
    assert_eq!(server.service().registered_keys(), 0);
    let sizes = ypir().message_sizes().unwrap();
    assert!(found.bytes_sent > sizes.query as u64);
    // A batch: every CPI evaluated, then every query sent.
    let many = client
        .lookup_many(&[cpi("mailto:bob@example.org"), cpi("tel:+14155550100")])
        .await;
    assert_eq!(msps(many[0].as_ref().unwrap()), ["chat.example"]);
    assert_eq!(many[1].as_ref().unwrap().result.mappings.len(), 2);
}

#[tokio::test]
async fn the_server_refuses_keys_and_bad_queries_and_keeps_serving() {
    let server = start(ypir()).await;
    let mut rpc = DiscoveryClient::connect(server.url()).await.unwrap();
    let config = rpc
        .get_config(GetConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(config.scheme.is_none());
    let shape = config.ypir.unwrap();
    assert_eq!((shape.rows_log2, shape.instances), (11, 1));
    assert_eq!(config.sizes.unwrap().public_keys, 0);

    // Keys have nowhere to go: refused by the engine's name (the body limit lets them reach
    // the handler).
    let keys = pir_core::ClientKeys::generate(&SchemeParams::danger_test_only_small()).unwrap();
    let err = rpc
        .register_keys(RegisterKeysRequest::for_keys(&keys))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ypir-sp"), "{err:?}");

    // A query of the wrong length, and one with an unreduced word: INVALID_ARGUMENT.
    let sizes = ypir().message_sizes().unwrap();
    for bad in [vec![0u8; 100], vec![0xff; sizes.query]] {
        let err = rpc
            .query(QueryRequest::keyless(config.epoch, vec![bad]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // Evaluations without keys are charged to the network.
    let blinded = [
        pir_core::oprf::Blinded::new(&cpi("tel:+14155550100"), &mut rand::thread_rng())
            .unwrap()
            .element()
            .to_owned(),
    ];
    let evaluated = rpc
        .evaluate(EvaluateRequest::keyless(&blinded))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(evaluated.evaluated.len(), 1);

    // Still serving: a real client finds its CPI.
    let mut client = connect(&server).await;
    let found = client.lookup(&cpi("mailto:bob@example.org")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example"]);
}

/// A server that moves from YPIR+SP to Spiral and back: the client follows, registering keys
/// for Spiral and none for YPIR+SP.
#[tokio::test]
async fn the_client_follows_the_server_across_engines() {
    let server = start(ypir()).await;
    let mut client = connect(&server).await;
    server
        .service()
        .install(snapshot(2, spiral(), "ring.example"))
        .unwrap();
    let on_spiral = client.lookup(&cpi("mailto:bob@example.org")).await.unwrap();
    assert_eq!(msps(&on_spiral), ["ring.example"]);
    assert!(client.key_id().is_some());
    assert_eq!(server.service().registered_keys(), 1);
    server
        .service()
        .install(snapshot(3, ypir(), "wire.example"))
        .unwrap();
    let back = client.lookup(&cpi("mailto:bob@example.org")).await.unwrap();
    assert_eq!(msps(&back), ["wire.example"]);
    assert_eq!(client.key_id(), None);
}
