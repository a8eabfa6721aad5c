//! Helpers shared by the server's integration tests.

// Each test file is its own crate and uses some of these helpers only.
#![allow(dead_code)]

pub(crate) mod binary;
pub(crate) mod redis;

use std::net::SocketAddr;

use pir_core::{
    BuildOptions, Cpi, IssuerKey, LookupClient, Mapping, MappingFields, SchemeParams, Snapshot,
    TrustStore,
    oprf::{Evaluated, OprfKey},
};
use pir_proto::{
    EvaluationIn,
    v1::{
        EvaluateRequest, GetConfigRequest, RegisterKeysRequest, discovery_client::DiscoveryClient,
    },
};
use pir_server::{RunningServer, ServeOptions, TestHooks};
use tonic::transport::Channel;

/// The built `pir-server ARGS`, run in `dir`, with nothing from the environment that could
/// colour or filter the output under test.
pub(crate) fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pir-server"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("PIR_LOG_FORMAT")
        .output()
        .unwrap()
}

/// The OPRF key file every CLI test directory holds (`oprf-keygen --out oprf.key`, or
/// [`write_oprf_key`]): what `build`, `update` and `serve --oprf-key` are given.
pub(crate) const OPRF_KEY_FILE: &str = "oprf.key";

/// Writes the fixture OPRF key ([`pir_core::testing::oprf_key`], the one in-process snapshots
/// are keyed by) to `path`, owner-only as a secret must be to be read.
pub(crate) fn write_oprf_key(path: &std::path::Path) {
    pir_core::testing::write_secret(path, pir_core::testing::oprf_key().to_secret_text());
}

/// The arguments of `pir-server update` of `snapshot` with `delta.jsonl` (trusting
/// `issuer.pub`, keyed by `oprf.key`) into `out`, then `more`.
pub(crate) fn update_args<'a>(snapshot: &'a str, out: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "update",
        "--snapshot",
        snapshot,
        "--delta",
        "delta.jsonl",
        "--trust",
        "issuer.pub",
        "--oprf-key",
        OPRF_KEY_FILE,
        "--out",
        out,
    ];
    args.extend_from_slice(more);
    args
}

/// Every rate limit off, the evaluations' included, so that each test turns on only what it
/// looks at.
pub(crate) fn unlimited() -> ServeOptions {
    ServeOptions {
        per_key_rate: None,
        per_peer_rate: None,
        per_peer_registrations: None,
        global_registrations_per_second: None,
        key_evictions_per_minute: None,
        per_key_evaluations: None,
        per_peer_evaluations: None,
        global_evaluations_per_second: None,
        ..ServeOptions::default()
    }
}

/// Signals driven by the test: send on the first to stop, on the second to reload.
pub(crate) fn signals() -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::mpsc::Sender<()>,
    pir_server::process::Signals,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let signals = pir_server::process::Signals::new(
        async {
            let _ = stopped.await;
        },
        reloads,
    );
    (stop, reload, signals)
}

/// The arguments of `pir-server build` from `m.jsonl` (trusting `issuer.pub`, keyed by
/// `oprf.key`) into `out` in the small test shape, then `more`.
pub(crate) fn build_args<'a>(out: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "build",
        "--mappings",
        "m.jsonl",
        "--trust",
        "issuer.pub",
        "--oprf-key",
        OPRF_KEY_FILE,
        "--out",
        out,
        "--danger-test-params",
    ];
    args.extend_from_slice(more);
    args
}

/// The arguments of `pir-server synth` writing `count` mappings signed with `issuer_key` to
/// `out`.
pub(crate) fn synth_args<'a>(count: &'a str, issuer_key: &'a str, out: &'a str) -> [&'a str; 7] {
    [
        "synth",
        "--count",
        count,
        "--issuer-key",
        issuer_key,
        "--out",
        out,
    ]
}

/// The arguments of `pir-server tls-selfsigned` writing a certificate for `localhost` to
/// `c.pem` and its key to `k.pem`.
pub(crate) const SELFSIGNED_ARGS: [&str; 7] = [
    "tls-selfsigned",
    "--host",
    "localhost",
    "--cert-out",
    "c.pem",
    "--key-out",
    "k.pem",
];

/// A snapshot of the small test shape in which only `mailto:bob@example.org` is present (at
/// `chat.example`, signed by `issuer`), at `epoch`, with a salt of `salt` bytes, keyed by the
/// fixture OPRF key.
pub(crate) fn bob_snapshot(issuer: &IssuerKey, epoch: u64, salt: u8) -> Snapshot {
    let m = MappingFields::new(
        Cpi::parse("mailto:bob@example.org").unwrap(),
        "chat.example",
        None,
        None,
        0,
        u64::MAX,
    )
    .unwrap()
    .sign(issuer, None)
    .unwrap();
    let opts = BuildOptions {
        epoch,
        now: 1_800_000_000,
        salt: Some([salt; 32]),
        scheme: Some(SchemeParams::danger_test_only_small().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let trust = TrustStore::parse(&issuer.to_public_text()).unwrap();
    Snapshot::build(vec![m], &trust, &pir_core::testing::oprf_key(), &opts)
        .unwrap()
        .0
}

/// `cpi` at `msp`, signed by the fixture issuer, valid for ever.
pub(crate) fn forever(cpi: &str, msp: &str) -> Mapping {
    MappingFields::new(Cpi::parse(cpi).unwrap(), msp, None, None, 0, u64::MAX)
        .unwrap()
        .sign(&pir_core::testing::issuer(), None)
        .unwrap()
}

/// A snapshot of `mappings` (signed by the fixture issuer) in the small test shape, at `epoch`,
/// with a salt of `salt` bytes, keyed by the fixture OPRF key.
pub(crate) fn small_snapshot(mappings: Vec<Mapping>, epoch: u64, salt: u8) -> Snapshot {
    let opts = BuildOptions {
        salt: Some([salt; 32]),
        ..pir_core::testing::build_options(SchemeParams::danger_test_only_small(), epoch)
    };
    pir_core::testing::build_with(mappings, &opts)
}

/// The server's configuration, fetched over `rpc` and checked.
pub(crate) async fn config(rpc: &mut DiscoveryClient<Channel>) -> pir_proto::ConfigIn {
    let config = rpc
        .get_config(GetConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    pir_proto::ConfigIn::try_from(config).unwrap()
}

/// Fetches the configuration over `rpc`, makes a lookup client trusting the fixture issuer and
/// registers its keys; returns the client and the key id the server gave (checked against the
/// client's own).
pub(crate) async fn register(rpc: &mut DiscoveryClient<Channel>) -> (LookupClient, Vec<u8>) {
    let config = config(rpc).await;
    let client = LookupClient::new(config.lookup().clone(), pir_core::testing::trust()).unwrap();
    let id = rpc
        .register_keys(RegisterKeysRequest::for_keys(client.keys().unwrap()))
        .await
        .unwrap()
        .into_inner()
        .key_id;
    assert_eq!(id, client.keys().unwrap().id().0.to_vec());
    (client, id)
}

/// `cpis` evaluated through the server's `Discovery/Evaluate` over `rpc`, as a client does it:
/// blinded, sent with the MAC of `client`'s registered keys, the response checked for shape and
/// its proof against the configuration's OPRF public key, unblinded.
pub(crate) async fn evaluate(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    cpis: &[Cpi],
) -> Vec<Evaluated> {
    let blinded = client.blind(cpis, &mut rand::rngs::OsRng).unwrap();
    let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
    let response = rpc
        .evaluate(EvaluateRequest::authenticated(
            client.keys().unwrap(),
            &elements,
        ))
        .await
        .unwrap()
        .into_inner();
    let evaluation = EvaluationIn::parse(response, cpis.len()).unwrap();
    client.finalize(&blinded, evaluation.evaluation()).unwrap()
}

/// A private lookup of `cpi` over `rpc` with `client`'s keys (evaluated through the server,
/// then queried), decoded and verified: the MSPs found, sorted, or the status refusing it.
pub(crate) async fn try_lookup(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    cpi: &str,
) -> Result<Vec<String>, tonic::Status> {
    let blinded = client
        .blind(&[Cpi::parse(cpi).unwrap()], &mut rand::rngs::OsRng)
        .unwrap();
    let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
    let response = rpc
        .evaluate(EvaluateRequest::authenticated(
            client.keys().unwrap(),
            &elements,
        ))
        .await?
        .into_inner();
    let evaluation = EvaluationIn::parse(response, 1).unwrap();
    let evaluated = client.finalize(&blinded, evaluation.evaluation()).unwrap();
    let pending = client.query(&evaluated[0]).unwrap();
    let request = pir_proto::v1::QueryRequest::authenticated(
        client.keys().unwrap(),
        client.config().epoch(),
        vec![pending.query().to_vec()],
    );
    let response = rpc.query(request).await?.into_inner();
    let result = client
        .decode(pending, &response.answers[0], 1_800_000_000)
        .unwrap();
    let mut msps: Vec<String> = result.msps().into_iter().map(String::from).collect();
    msps.sort();
    Ok(msps)
}

/// `cpi` evaluated in process under the fixture OPRF key, for tests about something other than
/// the evaluation (their servers serve snapshots keyed by that key).
pub(crate) fn evaluated(cpi: &str) -> Evaluated {
    pir_core::testing::evaluate(&Cpi::parse(cpi).unwrap())
}

/// The epoch the plaintext server at `url` serves, if it answers `GetConfig`.
pub(crate) async fn serving_epoch(url: String) -> Option<u64> {
    let mut rpc = DiscoveryClient::connect(url).await.ok()?;
    Some(
        rpc.get_config(GetConfigRequest::default())
            .await
            .ok()?
            .into_inner()
            .epoch,
    )
}

/// Serves `snapshot` on a free loopback port, answering evaluations with the fixture OPRF key.
pub(crate) async fn start_on(snapshot: Snapshot, opts: ServeOptions) -> RunningServer {
    start_keyed_on(snapshot, opts, Some(pir_core::testing::oprf_key())).await
}

/// Serves `snapshot` on a free loopback port, answering evaluations with `oprf_key`, or as a
/// PIR host only (Evaluate UNIMPLEMENTED) without one.
pub(crate) async fn start_keyed_on(
    snapshot: Snapshot,
    opts: ServeOptions,
    oprf_key: Option<OprfKey>,
) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(snapshot, addr, opts, oprf_key)
        .await
        .unwrap()
}

/// Serves `snapshot` on a free loopback port, with default options and a query starting with
/// `marker` panicking while answered.
pub(crate) async fn start_panicking_on(snapshot: Snapshot, marker: &[u8]) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let hooks = TestHooks {
        danger_panic_marker: Some(marker.to_vec()),
    };
    RunningServer::start_with_test_hooks(
        snapshot,
        addr,
        ServeOptions::default(),
        Some(pir_core::testing::oprf_key()),
        hooks,
    )
    .await
    .unwrap()
}

/// A raw gRPC client of `server`, with room for public keys and batches (64 MiB messages).
pub(crate) async fn connect(server: &RunningServer) -> DiscoveryClient<Channel> {
    DiscoveryClient::connect(server.url())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20)
}

/// The response to a bare HTTP/1.1 `GET /metrics` at `addr`, as a Prometheus scraper sends it.
pub(crate) async fn scrape_metrics(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The status code and body of a bare HTTP/1.1 `GET path` at `addr` (a probe, as a kubelet
/// sends it).
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// The `grpc.health.v1` status of `service` at `addr` (plaintext).
pub(crate) async fn health(addr: SocketAddr, service: &str) -> Option<i32> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(channel(addr).await?);
    let reply = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    Some(reply.into_inner().status)
}

/// A plaintext channel to `addr`, if it connects.
pub(crate) async fn channel(addr: SocketAddr) -> Option<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()
}

/// Awaits a serve process's task (`Listening::run`), which must end cleanly within 20 s.
pub(crate) async fn stopped<E: std::fmt::Debug>(process: tokio::task::JoinHandle<Result<(), E>>) {
    tokio::time::timeout(std::time::Duration::from_secs(20), process)
        .await
        .expect("the process stops")
        .unwrap()
        .unwrap();
}
