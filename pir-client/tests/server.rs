//! The client library against the real server on a loopback port: lookups, verification, the
//! key file, and healing from evicted keys, new epochs and new parameters.

use std::{net::SocketAddr, os::unix::fs::PermissionsExt};

use pir_client::{AddressError, ClientError, ClientOptions, KeyFile, PirClient};
use pir_core::testing::{issuer, oprf_key, trust};
use pir_core::{
    BuildOptions, Cpi, IssuerKey, Mapping, MappingFields, SchemeFields, SchemeParams, Snapshot,
    TrustStore,
};
use pir_server::{RunningServer, ServeOptions};

fn mapping(cpi: &str, msp: &str, psi: Option<&str>, context: Option<&str>) -> Mapping {
    MappingFields::new(Cpi::parse(cpi).unwrap(), msp, psi, context, 0, u64::MAX)
        .unwrap()
        .sign(&issuer(), None)
        .unwrap()
}

fn small() -> SchemeParams {
    SchemeParams::danger_test_only_small()
}

/// Twice the items of [`small`]: other parameters, so other keys.
fn larger() -> SchemeParams {
    SchemeParams::try_from(SchemeFields {
        nu_2: 3,
        ..*small()
    })
    .unwrap()
}

fn snapshot(epoch: u64, scheme: SchemeParams, bob_msp: &str) -> Snapshot {
    let mappings = vec![
        mapping(
            "tel:+14155550100",
            "chat.example",
            Some("@alice:chat.example"),
            Some("work"),
        ),
        mapping("tel:+14155550100", "talk.example", None, None),
        mapping("mailto:bob@example.org", bob_msp, None, None),
    ];
    let opts = BuildOptions {
        epoch,
        now: pir_core::unix_now(),
        salt: Some([epoch as u8; 32]),
        scheme: Some(scheme.into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    Snapshot::build(mappings, &trust(), &oprf_key(), &opts)
        .unwrap()
        .0
}

async fn start() -> RunningServer {
    start_with(ServeOptions::default()).await
}

/// [`start`], with these options.
async fn start_with(options: ServeOptions) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(
        snapshot(1, small(), "chat.example"),
        addr,
        options,
        Some(oprf_key()),
    )
    .await
    .unwrap()
}

/// A client of `server` that trusts the fixture issuer.
async fn connect(server: &RunningServer) -> PirClient {
    PirClient::connect(
        &server.url(),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap()
}

fn cpi(s: &str) -> Cpi {
    Cpi::parse(s).unwrap()
}

fn msps(outcome: &pir_client::LookupOutcome) -> Vec<&str> {
    let mut v = outcome.result.msps();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn lookups_found_and_not_found() {
    let server = start().await;
    let mut client = connect(&server).await;
    assert_eq!(client.config().lookup().epoch(), 1);
    assert_eq!(server.service().registered_keys(), 1);

    let found = client.lookup(&cpi("tel:+1 415 555 0100")).await.unwrap();
    assert_eq!(found.result.cpi.as_str(), "tel:+14155550100");
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    let sizes = small().message_sizes().unwrap();
    assert!(found.bytes_sent > sizes.query as u64, "{found:?}");
    assert!(found.bytes_received > sizes.response as u64, "{found:?}");
    assert!(found.millis > 0.0);

    let missing = client.lookup(&cpi("tel:+14155550199")).await.unwrap();
    assert!(!missing.result.found());
    // Absent and present CPIs cost the same bytes.
    assert_eq!(missing.bytes_sent, found.bytes_sent);
    assert_eq!(missing.bytes_received, found.bytes_received);

    let json = pir_client::outcome_json(&found);
    let work = json["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["msp"] == "chat.example")
        .unwrap();
    assert_eq!(work["psi"], "@alice:chat.example");
    assert_eq!(work["context"], "work");

    let many: Vec<_> = client
        .lookup_many(&[cpi("mailto:bob@example.org"), cpi("tel:+14155550199")])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(msps(&many[0]), ["chat.example"]);
    assert!(!many[1].result.found());

    let info = client.info().await.unwrap();
    assert_eq!(info.mapping_count(), 3);
    let fetched = pir_client::fetch_config(&server.url(), &ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.lookup(), client.config().lookup());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn untrusted_issuers_mappings_are_skipped_with_a_hint() {
    let server = start().await;
    let mut other = TrustStore::new();
    let _ = other.add(IssuerKey::from_seed(&[1; 32]).verifying_key());
    let mut client = PirClient::connect(
        &server.url(),
        ClientOptions::new(other).allowing_custom_params(),
    )
    .await
    .unwrap();
    let outcome = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert!(!outcome.result.found());
    // This number has two mappings, both from the one issuer not trusted here.
    assert_eq!(outcome.result.untrusted, [issuer().id(), issuer().id()]);
    let text = pir_client::outcome_text(&outcome);
    assert!(
        text.contains(&format!(
            "2 mapping(s) skipped: signed by issuer {} not in --trust",
            issuer().id()
        )),
        "{text}"
    );
    let id = issuer().id().to_string();
    assert_eq!(
        pir_client::outcome_json(&outcome)["untrusted_issuers"],
        serde_json::json!([id, id])
    );
    // A CPI with no entry has nothing to verify.
    assert!(
        !client
            .lookup(&cpi("tel:+14155550199"))
            .await
            .unwrap()
            .result
            .found()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heals_evicted_keys() {
    let server = start().await;
    let mut client = connect(&server).await;
    let before = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    server.service().evict_all_keys();
    assert_eq!(server.service().registered_keys(), 0);
    let healed = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&healed), ["chat.example", "talk.example"]);
    assert_eq!(server.service().registered_keys(), 1);
    // The evaluation comes first, so it is what hears of the unknown key: the refused
    // evaluation and the key upload are part of this lookup's bytes, and no query was refused
    // (one would add a whole query, kilobytes more than the upload's small change).
    let sizes = small().message_sizes().unwrap();
    let extra = healed.bytes_sent - before.bytes_sent;
    assert!(
        extra > sizes.public_keys as u64 && extra < (sizes.public_keys + sizes.query) as u64,
        "{extra} more bytes: {healed:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heals_a_new_epoch_with_a_new_layout() {
    let server = start().await;
    let mut client = connect(&server).await;
    let key_id = client.key_id();
    assert_eq!(
        msps(&client.lookup(&cpi("mailto:bob@example.org")).await.unwrap()),
        ["chat.example"]
    );

    // Same parameters, new salt: the keys stay, the query is re-encrypted for the new layout.
    server
        .service()
        .install(snapshot(2, small(), "ring.example"))
        .unwrap();
    let healed = client.lookup(&cpi("mailto:bob@example.org")).await.unwrap();
    assert_eq!(msps(&healed), ["ring.example"]);
    assert_eq!(client.config().lookup().epoch(), 2);
    assert_eq!(client.key_id(), key_id);
    assert_eq!(server.service().registered_keys(), 1);
    server.stop().await.unwrap();
}

/// Options keeping the client's keys in `client.keys` in `dir`, and that path.
fn with_key_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, ClientOptions) {
    let path = dir.path().join("client.keys");
    let options = ClientOptions {
        key_file: Some(path.clone()),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    (path, options)
}

#[tokio::test]
async fn key_file_is_reused_and_replaced_when_parameters_change() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options) = with_key_file(&dir);
    let server = start().await;

    let first = PirClient::connect(&server.url(), options.clone())
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        KeyFile::new(&path).read().unwrap().id(),
        first.key_id().unwrap()
    );
    drop(first);

    // A fresh server: the stored keys are reused without registering up front, and the first
    // lookup registers them when the server says it does not know them.
    server.stop().await.unwrap();
    let server = start().await;
    let mut second = PirClient::connect(&server.url(), options.clone())
        .await
        .unwrap();
    assert_eq!(
        KeyFile::new(&path).read().unwrap().id(),
        second.key_id().unwrap()
    );
    assert_eq!(server.service().registered_keys(), 0);
    let found = second.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    assert_eq!(server.service().registered_keys(), 1);

    // New parameters: new keys, registered, and saved over the old ones.
    let old_id = second.key_id().unwrap();
    server
        .service()
        .install(snapshot(3, larger(), "chat.example"))
        .unwrap();
    let healed = second.lookup(&cpi("mailto:bob@example.org")).await.unwrap();
    assert_eq!(msps(&healed), ["chat.example"]);
    assert_eq!(*second.config().lookup().scheme(), larger().into());
    assert_ne!(second.key_id().unwrap(), old_id);
    let stored = KeyFile::new(&path).read().unwrap();
    assert_eq!(*stored.params(), larger());
    assert_eq!(stored.id(), second.key_id().unwrap());
    server.stop().await.unwrap();
}

/// Keys a client made before the words no answer reads were left out (a key file from then)
/// are still taken: registered as they are, and answered with.
#[tokio::test]
async fn keys_in_the_legacy_form_still_register_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options) = with_key_file(&dir);
    let current = pir_core::ClientKeys::generate(&small()).unwrap();
    let legacy = current.danger_in_legacy_form().unwrap();
    assert!(legacy.public_bytes().len() > current.public_bytes().len());
    KeyFile::new(&path).write(&legacy, None).unwrap();
    let server = start().await;
    let mut client = PirClient::connect(&server.url(), options).await.unwrap();
    assert_eq!(client.key_id().unwrap(), legacy.id());
    let found = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    let absent = client.lookup(&cpi("tel:+14155550199")).await.unwrap();
    assert!(!absent.result.found());
    assert_eq!(server.service().registered_keys(), 1);
    assert_eq!(KeyFile::new(&path).read().unwrap().id(), legacy.id());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rotating_keys_replaces_them_in_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, options) = with_key_file(&dir);
    let server = start().await;
    let old_id = PirClient::connect(&server.url(), options.clone())
        .await
        .unwrap()
        .key_id()
        .unwrap();

    let rotate = ClientOptions {
        rotate_keys: true,
        ..options.clone()
    };
    let mut rotated = PirClient::connect(&server.url(), rotate).await.unwrap();
    assert_ne!(
        rotated.key_id().unwrap(),
        old_id,
        "fresh keys, not the stored ones"
    );
    assert_eq!(
        KeyFile::new(&path).read().unwrap().id(),
        rotated.key_id().unwrap()
    );
    // Registered at connect: both key sets are known to the server, the new one works.
    assert_eq!(server.service().registered_keys(), 2);
    let found = rotated.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    // Without the option, the rotated keys are the ones reused next time.
    let again = PirClient::connect(&server.url(), options).await.unwrap();
    assert_eq!(again.key_id(), rotated.key_id());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connection_errors_are_clear() {
    let err = PirClient::connect(
        "not a url",
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::InvalidAddress { .. }), "{err:?}");
    for (url, reason) in [
        (
            "ftp://127.0.0.1:50051",
            AddressError::Scheme {
                scheme: "ftp".into(),
            },
        ),
        (
            "http://127.0.0.1:99999",
            AddressError::Port {
                port: "99999".into(),
            },
        ),
    ] {
        match PirClient::connect(url, ClientOptions::new(trust()).allowing_custom_params()).await {
            Err(ClientError::InvalidAddress { reason: got, .. }) => assert_eq!(got, reason),
            other => panic!("{url}: {other:?}"),
        }
    }

    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PirClient::connect(
        &format!("http://127.0.0.1:{port}"),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");

    // Plaintext leaves this machine only when asked for by name.
    let err = PirClient::connect("http://192.0.2.1:50051", ClientOptions::new(trust()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::PlaintextRefused { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
}

/// A load run of `clients` clients sharing one key file, for `millis` ms.
async fn bench(
    server: &RunningServer,
    clients: usize,
    millis: u64,
) -> pir_client::bench::BenchReport {
    let dir = tempfile::tempdir().unwrap();
    let options = ClientOptions {
        key_file: Some(dir.path().join("bench.keys")),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    pir_client::bench::run(
        &server.url(),
        options,
        clients,
        std::time::Duration::from_millis(millis),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_concurrent_clients_on_shared_keys() {
    let server = start().await;
    let report = bench(&server, 3, 1500).await;
    assert!(report.lookups > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.first_error, None);
    assert!(report.p99_ms >= report.p50_ms);
    // One key set for all three clients.
    assert_eq!(server.service().registered_keys(), 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_with_cpis_finds_and_verifies_them() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ClientOptions {
        key_file: Some(dir.path().join("bench.keys")),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    let cpis = vec![cpi("tel:+14155550100"), cpi("mailto:bob@example.org")];
    let report = pir_client::bench::run_with_cpis(
        &server.url(),
        options,
        2,
        std::time::Duration::from_millis(1500),
        cpis.into(),
    )
    .await
    .unwrap();
    assert!(report.lookups > 0, "{report:?}");
    assert_eq!(
        (report.found, report.errors),
        (report.lookups, 0),
        "{report:?}"
    );
    server.stop().await.unwrap();
}

/// A CA (written to `dir/ca.pem`) and a `localhost` identity it issued, as
/// `pir-server tls-selfsigned --ca-out` makes them.
fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, pir_server::Identity) {
    let request = pir_server::SelfSignedRequest {
        hosts: vec!["localhost".into()],
        days: 1,
        ca_out: Some(dir.join("ca.pem")),
        cert_out: dir.join("cert.pem"),
        key_out: dir.join("key.pem"),
        force: false,
    };
    pir_server::tls_selfsigned(&request).unwrap();
    let read = |name| std::fs::read(dir.join(name)).unwrap();
    (
        dir.join("ca.pem"),
        pir_server::Identity::from_pem(read("cert.pem"), read("key.pem")),
    )
}

/// `https://` to a plaintext port and `http://` to a TLS port say which scheme to use, in any
/// case of the scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheme_that_does_not_match_the_port_says_which_to_use() {
    let plain = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, identity) = certificates(dir.path());
    let tls = RunningServer::start_tls(
        snapshot(1, small(), "chat.example"),
        "127.0.0.1:0".parse().unwrap(),
        ServeOptions::default(),
        Some(oprf_key()),
        Some(identity),
    )
    .await
    .unwrap();
    let with_ca = || ClientOptions {
        tls_ca: Some(ca.clone()),
        connect_timeout: Some(std::time::Duration::from_secs(5)),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    let plain_port = plain.addr().port();
    let err = PirClient::connect(&format!("HTTPS://localhost:{plain_port}"), with_ca())
        .await
        .unwrap_err();
    let ClientError::TlsMismatch {
        server_speaks_tls: false,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "https://localhost:{plain_port}: the server does not speak TLS on this port: use http://"
        )
    );
    let tls_port = tls.addr().port();
    let err = PirClient::connect(
        &format!("http://localhost:{tls_port}"),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap_err();
    let ClientError::TlsMismatch {
        server_speaks_tls: true,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(err.to_string().contains("use https://"), "{err}");
    let err = PirClient::connect(
        &format!("https://localhost:{tls_port}"),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap_err();
    // Without the CA, the certificate's issuer is unknown: say to pass --ca.
    let ClientError::Certificate {
        problem: pir_client::CertificateProblem::UnknownIssuer,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        err.to_string()
            .contains("pass the CA's certificate with --ca"),
        "{err}"
    );
    // A bare HOST:PORT means TLS: against the plaintext port, that is a mismatch.
    let err = PirClient::connect(&format!("localhost:{plain_port}"), with_ca())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::TlsMismatch {
                server_speaks_tls: false,
                ..
            }
        ),
        "{err:?}"
    );
    PirClient::connect(&format!("localhost:{tls_port}"), with_ca())
        .await
        .unwrap();
    // The right scheme, in upper case, works.
    PirClient::connect(&format!("HTTPS://localhost:{tls_port}"), with_ca())
        .await
        .unwrap();
    plain.stop().await.unwrap();
    tls.stop().await.unwrap();
}

/// Options that let each key make one query, then `per_hour` more an hour.
fn one_query_per_key(per_hour: u32) -> ServeOptions {
    ServeOptions {
        per_key_rate: Some(pir_server::RateLimit { burst: 1, per_hour }),
        ..ServeOptions::default()
    }
}

/// Over its rate limit, a lookup fails with the canonical code name and the server's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_lookup_says_when_to_retry() {
    let server = start_with(one_query_per_key(60)).await;
    let mut client = connect(&server).await;
    let bob = cpi("mailto:bob@example.org");
    client.lookup(&bob).await.unwrap();
    let err = client.lookup(&bob).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "Query failed: RESOURCE_EXHAUSTED: rate limit of this key exceeded; retry in "
        ),
        "{text}"
    );
    // One token a minute: the wait is at most a minute and more than none.
    let wait = err.retry_after().unwrap();
    assert!(
        wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(60),
        "{wait:?}"
    );
    server.stop().await.unwrap();
}

/// A bench whose lookups fail reports the first error, so the operator sees what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_its_first_error() {
    let server = start_with(one_query_per_key(1)).await;
    let report = bench(&server, 1, 800).await;
    assert!(report.errors > 0, "{report:?}");
    let first = report.first_error.unwrap();
    assert!(first.contains("RESOURCE_EXHAUSTED"), "{first}");
    server.stop().await.unwrap();
}

/// `name{labels}`'s value in the server's metrics, 0 if never counted.
fn counted(server: &RunningServer, line: &str) -> u64 {
    server
        .service()
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_is_renewed_before_it_expires_and_registered_again_once_it_has() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(ServeOptions {
        key_store: pir_server::KeyStoreSpec::File(dir.path().join("keys.redb")),
        key_ttl: Duration::from_secs(4),
        ..ServeOptions::default()
    })
    .await;
    let inserts = "pir_key_store_operations_total{backend=\"embedded\",op=\"insert\"}";
    let renewals = "pir_key_store_operations_total{backend=\"embedded\",op=\"renew\"}";
    let mut client = connect(&server).await;
    let first = client.registered_until().unwrap();
    let ahead = first.duration_since(SystemTime::now()).unwrap();
    assert!(
        ahead > Duration::from_secs(2) && ahead <= Duration::from_secs(4),
        "{ahead:?}"
    );
    assert_eq!(
        (counted(&server, inserts), counted(&server, renewals)),
        (1, 0)
    );

    // Within the first half: nothing to renew.
    client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(counted(&server, renewals), 0);
    // Past half its lifetime, the next lookup renews it, without uploading the keys.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let found = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&found), ["chat.example", "talk.example"]);
    assert_eq!(
        (counted(&server, inserts), counted(&server, renewals)),
        (1, 1)
    );
    let renewed = client.registered_until().unwrap();
    assert!(renewed > first, "{renewed:?} after {first:?}");

    // Left to expire: the server forgets the keys, and the client registers them again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let healed = client.lookup(&cpi("tel:+14155550100")).await.unwrap();
    assert_eq!(msps(&healed), ["chat.example", "talk.example"]);
    assert_eq!(counted(&server, inserts), 2);
    assert!(client.registered_until().unwrap() > renewed);
    server.stop().await.unwrap();
}
