//! The client against a malicious Discovery server: a tonic service in the test that wraps real
//! `DiscoveryService`s and tampers with what they say (replays an older or another signed
//! configuration, serves planted entries, offers unvetted or heavy parameters, never answers)
//! while it records every request it sees.
//!
//! What each test shows: the client refuses rollbacks (an older epoch, or another header of the
//! epoch it verified), reports a planted entry as that one CPI's failure while its requests
//! stay the same as when the target is not asked, refuses parameters it should not run, and
//! gives up on answers that never come with a clear error.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pir_client::{
    ClientError, ClientOptions, KeyFile, ParamsRefusal, PirClient, SeenSnapshot, SnapshotRefusal,
};
use pir_core::{
    BuildOptions, CoreError, Cpi, DpKey, Mapping, SchemeParams, Snapshot,
    testing::{dp_key, dp_keys_of, mapping_valid, tamper_chat_example, tiny_scheme, trust},
};
use pir_proto::{
    REASON_KEY, REASON_STALE_EPOCH,
    v1::{
        self, GetConfigRequest, GetConfigResponse, QueryRequest, QueryResponse,
        RegisterKeysRequest, RegisterKeysResponse,
        discovery_server::{Discovery, DiscoveryServer},
    },
};
use pir_server::{DiscoveryService, ServeOptions};
use prost::Message;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

// ------------------------------------------------------------------------------ the fixtures

/// Valid for ever: the client checks validity against the real clock.
fn mapping(cpi: &str, msp: &str) -> Mapping {
    mapping_valid(cpi, msp, None, None, (0, u64::MAX), None)
}

const ALICE: &str = "tel:+14155550100";
const BOB: &str = "mailto:bob@example.org";
const CAROL: &str = "mailto:carol@example.com";

fn cpi(s: &str) -> Cpi {
    Cpi::parse(s).unwrap()
}

/// A snapshot of three CPIs on the tiny shape, with its own salt, signed by `signer` if any.
fn snapshot(epoch: u64, salt: u8, signer: Option<&DpKey>) -> Snapshot {
    let mappings = vec![
        mapping(ALICE, "chat.example"),
        mapping(BOB, "chat.example"),
        mapping(CAROL, "mail.example"),
    ];
    let opts = BuildOptions {
        epoch,
        now: pir_core::unix_now(),
        salt: Some([salt; 32]),
        scheme: Some(tiny_scheme()),
    };
    let mut s = Snapshot::build(mappings, &trust(), &opts).unwrap().0;
    if let Some(key) = signer {
        s.sign(key).unwrap();
    }
    s
}

fn signed(epoch: u64, salt: u8) -> Snapshot {
    snapshot(epoch, salt, Some(&dp_key()))
}

/// The configuration a real server sends for `s`.
fn config_of(s: &Snapshot) -> GetConfigResponse {
    let limits = v1::Limits {
        max_queries_per_request: 32,
        max_message_bytes: 32 << 20,
    };
    GetConfigResponse::for_snapshot(s, limits).unwrap()
}

/// Test shapes are not vetted presets: the options of a test client that may use them.
fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Some(Duration::from_secs(20)),
        ..ClientOptions::new(trust()).allowing_custom_params()
    }
}

/// [`options`] requiring the fixture DP's signature, remembering snapshots in `key_file`.
fn dp_options(key_file: &Path) -> ClientOptions {
    ClientOptions {
        key_file: Some(key_file.to_path_buf()),
        ..options().with_dp_keys(dp_keys_of(&dp_key()))
    }
}

// --------------------------------------------------------------------- the hostile server

/// One request as the server saw it: the RPC, the message's encoded size, and for a query
/// request the size of each query in it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    rpc: &'static str,
    bytes: usize,
    queries: Vec<usize>,
}

/// What the hostile server does instead of telling the truth.
#[derive(Default)]
struct Tamper {
    /// Sent in place of the real configuration.
    config: Option<GetConfigResponse>,
    /// Queries are refused as if for a stale epoch (so the client refreshes).
    stale_queries: bool,
    /// Queries are never answered.
    stall_queries: bool,
    /// GetConfig is never answered.
    stall_config: bool,
}

#[derive(Clone)]
struct Hostile {
    /// The real service requests go to (switchable: two real services of one epoch).
    backend: Arc<Mutex<DiscoveryService>>,
    tamper: Arc<Mutex<Tamper>>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    fn new(snapshot: Snapshot) -> Self {
        Self {
            backend: Arc::new(Mutex::new(service(snapshot))),
            tamper: Arc::default(),
            log: Arc::default(),
        }
    }

    fn record(&self, rpc: &'static str, message: &impl Message, queries: Vec<usize>) {
        self.log.lock().unwrap().push(Seen {
            rpc,
            bytes: message.encoded_len(),
            queries,
        });
    }

    fn backend(&self) -> DiscoveryService {
        self.backend.lock().unwrap().clone()
    }

    fn set(&self, edit: impl FnOnce(&mut Tamper)) {
        edit(&mut self.tamper.lock().unwrap());
    }

    /// The requests seen so far, forgotten.
    fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut self.log.lock().unwrap())
    }

    /// Serves on a loopback port; returns the URL and the task (abort it to stop).
    async fn serve(&self) -> (String, tokio::task::JoinHandle<()>) {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let incoming = TcpIncoming::bind(addr).unwrap();
        let addr = incoming.local_addr().unwrap();
        let service = DiscoveryServer::new(self.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        (format!("http://{addr}"), task)
    }
}

fn service(snapshot: Snapshot) -> DiscoveryService {
    DiscoveryService::new(snapshot, ServeOptions::default()).unwrap()
}

#[tonic::async_trait]
impl Discovery for Hostile {
    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        self.record("GetConfig", req.get_ref(), Vec::new());
        let (stall, replay) = {
            let t = self.tamper.lock().unwrap();
            (t.stall_config, t.config.clone())
        };
        if stall {
            std::future::pending::<()>().await;
        }
        match replay {
            Some(config) => Ok(Response::new(config)),
            None => Discovery::get_config(&self.backend(), req).await,
        }
    }

    async fn register_keys(
        &self,
        req: Request<RegisterKeysRequest>,
    ) -> Result<Response<RegisterKeysResponse>, Status> {
        self.record("RegisterKeys", req.get_ref(), Vec::new());
        Discovery::register_keys(&self.backend(), req).await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let sizes = req.get_ref().queries.iter().map(Vec::len).collect();
        self.record("Query", req.get_ref(), sizes);
        let (stall, stale) = {
            let t = self.tamper.lock().unwrap();
            (t.stall_queries, t.stale_queries)
        };
        if stall {
            std::future::pending::<()>().await;
        }
        if stale {
            let mut status = Status::failed_precondition("stale epoch");
            status
                .metadata_mut()
                .insert(REASON_KEY, REASON_STALE_EPOCH.parse().unwrap());
            return Err(status);
        }
        Discovery::query(&self.backend(), req).await
    }
}

fn seen_in(key_file: &Path) -> Option<SeenSnapshot> {
    KeyFile::new(key_file).load().unwrap().unwrap().seen
}

fn refusal(err: ClientError) -> SnapshotRefusal {
    match err {
        ClientError::SnapshotRefused(r) => r,
        other => panic!("expected a refused snapshot, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------- rollback

/// With the DP's key, a client remembers the newest snapshot it verified in its key file and
/// refuses an older epoch, another header of that epoch, an unsigned or foreign-signed
/// header, a missing one, and a configuration that says other than its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_and_forged_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.keys");
    let current = signed(2, 2);
    let current_hash = current.header().hash().unwrap();
    let hostile = Hostile::new(signed(2, 2));
    let (url, task) = hostile.serve().await;

    let mut client = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap();
    let verified = SeenSnapshot {
        epoch: 2,
        header_hash: current_hash,
    };
    assert_eq!(client.verified_snapshot(), Some(verified));
    assert_eq!(seen_in(&key_file), Some(verified));
    assert!(client.lookup(&cpi(BOB)).await.unwrap().result.found());

    // An older signed snapshot, replayed: a new run with the key file refuses it, naming both
    // epochs and where the newer one is remembered.
    hostile.set(|t| t.config = Some(config_of(&signed(1, 1))));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    let text = err.to_string();
    match refusal(err) {
        SnapshotRefusal::Rollback {
            offered: 1,
            seen: 2,
            key_file: Some(path),
        } => assert_eq!(path, key_file),
        other => panic!("{other:?}"),
    }
    assert!(
        text.contains("offers epoch 1, older than epoch 2 already verified")
            && text.contains("client.keys"),
        "{text}"
    );
    // The running client refuses it too when the server makes it refresh, and keeps its
    // configuration.
    hostile.set(|t| t.stale_queries = true);
    let err = client.lookup(&cpi(BOB)).await.unwrap_err();
    assert!(
        matches!(
            refusal(err),
            SnapshotRefusal::Rollback {
                offered: 1,
                seen: 2,
                ..
            }
        ),
        "rollback on refresh"
    );
    assert_eq!(client.config().lookup().epoch(), 2);
    hostile.set(|t| t.stale_queries = false);

    // Another snapshot with the epoch already verified (the same mappings, another salt).
    hostile.set(|t| t.config = Some(config_of(&signed(2, 7))));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(refusal(err), SnapshotRefusal::Fork { epoch: 2, .. }),
        "fork"
    );

    // Newer, but unsigned, or signed by a key the client does not trust.
    hostile.set(|t| t.config = Some(config_of(&snapshot(3, 3, None))));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(matches!(
        refusal(err),
        SnapshotRefusal::Signature(CoreError::UnsignedSnapshot)
    ));
    let stranger = DpKey::from_seed(&[51; 32]);
    hostile.set(|t| t.config = Some(config_of(&snapshot(3, 3, Some(&stranger)))));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(matches!(
        refusal(err),
        SnapshotRefusal::Signature(CoreError::UnknownDpKey(_))
    ));

    // A signed header whose signature was tampered with (its last byte).
    let mut forged = config_of(&signed(3, 3));
    *forged.snapshot_header.last_mut().unwrap() ^= 1;
    hostile.set(|t| t.config = Some(forged));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(matches!(
        refusal(err),
        SnapshotRefusal::Signature(CoreError::BadSnapshotSignature)
    ));

    // The genuine header of the current snapshot, with another salt in the layout field.
    let mut lying = config_of(&current);
    lying.layout.as_mut().unwrap().salt = vec![7; 32];
    hostile.set(|t| t.config = Some(lying));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::InvalidServerConfig(pir_proto::ConvertError::HeaderMismatch {
                field: "layout"
            })
        ),
        "{err:?}"
    );

    // No header at all (a server that does not send one) cannot be checked.
    let mut bare = config_of(&current);
    bare.snapshot_header.clear();
    hostile.set(|t| t.config = Some(bare));
    let err = PirClient::connect(&url, dp_options(&key_file))
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), SnapshotRefusal::NoHeader));

    // Nothing refused was remembered; a client without the DP's key is not protected (as
    // documented) and takes the older snapshot.
    assert_eq!(seen_in(&key_file), Some(verified));
    hostile.set(|t| t.config = Some(config_of(&signed(1, 1))));
    let unprotected = PirClient::connect(&url, options()).await.unwrap();
    assert_eq!(unprotected.config().lookup().epoch(), 1);

    // A newer signed snapshot is followed, and remembered.
    hostile.set(|t| t.config = None);
    let newer = signed(3, 3);
    let newer_hash = newer.header().hash().unwrap();
    hostile.backend().install(newer).unwrap();
    assert!(client.lookup(&cpi(BOB)).await.unwrap().result.found());
    let verified = SeenSnapshot {
        epoch: 3,
        header_hash: newer_hash,
    };
    assert_eq!(client.verified_snapshot(), Some(verified));
    assert_eq!(seen_in(&key_file), Some(verified));
    task.abort();
}

/// Without the DP's key, a same-epoch snapshot with another salt is still detected: every
/// answer names the snapshot that made it, and the client refetches the configuration instead
/// of decoding with the old layout (which made present CPIs "not found", silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_epoch_snapshot_with_another_salt_is_followed_not_misread() {
    let hostile = Hostile::new(snapshot(5, 1, None));
    let (url, task) = hostile.serve().await;
    let mut client = PirClient::connect(&url, options()).await.unwrap();
    let before = client.config().header_hash();
    assert!(client.lookup(&cpi(ALICE)).await.unwrap().result.found());
    // The operator rebuilt the same mappings with the same epoch and restarted the server.
    *hostile.backend.lock().unwrap() = service(snapshot(5, 2, None));
    for name in [ALICE, BOB, CAROL] {
        let outcome = client.lookup(&cpi(name)).await.unwrap();
        assert!(outcome.result.found(), "{name} reported not found");
    }
    assert_eq!(client.config().lookup().epoch(), 5);
    assert_ne!(client.config().header_hash(), before);
    assert_eq!(client.config().lookup().layout().salt, [2; 32]);
    task.abort();
}

// ------------------------------------------------------------------------- planted entry

/// A server that plants an entry failing verification under a target CPI's tag learns nothing
/// from the client's requests: the batch with the target and a batch without it send the same
/// requests (count, order, sizes), the target's lookup alone fails, and the others succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_entry_fails_its_cpi_alone_and_changes_no_request() {
    let mut planted = snapshot(1, 1, None);
    let target = cpi(BOB);
    let bucket = planted.config().layout().locate(&target).bucket.0 as usize;
    // Bob's mapping says "chat.example"; the server makes it "chet.example" (the issuer's
    // signature no longer covers it).
    tamper_chat_example(&mut planted, bucket);
    let other_in_bucket = [ALICE, CAROL]
        .into_iter()
        .any(|c| planted.config().layout().locate(&cpi(c)).bucket.0 as usize == bucket);
    assert!(
        !other_in_bucket,
        "the fixture's salt must keep the target alone in its bucket"
    );
    let hostile = Hostile::new(planted);
    let (url, task) = hostile.serve().await;
    let mut client = PirClient::connect(&url, options()).await.unwrap();
    hostile.take_log();

    let with_target = [cpi(ALICE), target.clone(), cpi("tel:+14155550199")];
    let outcomes = client.lookup_many(&with_target).await;
    let seen_with = hostile.take_log();
    assert!(outcomes[0].as_ref().unwrap().result.found());
    match &outcomes[1] {
        Err(ClientError::Lookup { cpi, source }) => {
            assert_eq!(cpi, target.as_str());
            assert!(matches!(source, CoreError::BadIssuerSignature), "{source}");
        }
        other => panic!("the target's lookup should fail verification: {other:?}"),
    }
    assert!(!outcomes[2].as_ref().unwrap().result.found());

    let without_target = [cpi(ALICE), cpi("mailto:nobody@example.org"), cpi(CAROL)];
    let outcomes = client.lookup_many(&without_target).await;
    let seen_without = hostile.take_log();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    assert_eq!(seen_with.len(), 3, "{seen_with:?}");
    assert!(seen_with.iter().all(|s| s.rpc == "Query"), "{seen_with:?}");
    assert_eq!(seen_with, seen_without);
    // A batch where the target comes first still sends everything after it.
    let target_first = [target.clone(), cpi(ALICE), cpi(CAROL)];
    let outcomes = client.lookup_many(&target_first).await;
    assert!(outcomes[0].is_err() && outcomes[1].is_ok() && outcomes[2].is_ok());
    assert_eq!(hostile.take_log(), seen_without);
    task.abort();
}

// ---------------------------------------------------------------------------- parameters

/// Parameters that are not a vetted preset are refused before any key is made or sent, unless
/// the caller allows them; and parameters whose messages exceed the client's limit are refused
/// even then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvetted_and_heavy_parameters_are_refused_before_any_key_is_made() {
    let hostile = Hostile::new(snapshot(1, 1, None));
    let (url, task) = hostile.serve().await;
    let err = PirClient::connect(&url, ClientOptions::new(trust()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::RefusedParams {
                reason: ParamsRefusal::NotVetted,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--allow-custom-params"), "{err}");
    let rpcs: Vec<&str> = hostile.take_log().iter().map(|s| s.rpc).collect();
    assert_eq!(rpcs, ["GetConfig"]);

    let public_keys = tiny_scheme().message_sizes().unwrap().public_keys as u64;
    let small_limit = ClientOptions {
        max_message_bytes: (public_keys / 2) as usize,
        ..options()
    };
    let err = PirClient::connect(&url, small_limit).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::RefusedParams {
                reason: ParamsRefusal::TooLarge {
                    what: "public keys",
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
    let rpcs: Vec<&str> = hostile.take_log().iter().map(|s| s.rpc).collect();
    assert_eq!(rpcs, ["GetConfig"]);

    // A vetted preset passes the check (it is only refused here for the test's message limit).
    let vetted = SchemeParams::vetted_presets().next().unwrap().params;
    let mut config = config_of(&snapshot(1, 1, None));
    config.scheme = Some((&vetted).into());
    config.layout =
        Some((&pir_core::KeywordLayout::new([1; 32], vetted.num_items() as u32).unwrap()).into());
    config.snapshot_header.clear();
    hostile.set(|t| t.config = Some(config));
    let tight = ClientOptions {
        max_message_bytes: 1 << 10,
        ..ClientOptions::new(trust())
    };
    let err = PirClient::connect(&url, tight).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::RefusedParams {
                reason: ParamsRefusal::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    task.abort();
}

// ------------------------------------------------------------------------------ deadlines

/// Answers that never come: every RPC has a deadline, and its error says which RPC and how
/// long, for a lookup, for `fetch_config` (what `info` runs) and for the CLI's `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_never_come_hit_the_deadline() {
    let hostile = Hostile::new(snapshot(1, 1, None));
    let (url, task) = hostile.serve().await;
    let quick = ClientOptions {
        request_timeout: Some(Duration::from_secs(1)),
        ..options()
    };
    let mut client = PirClient::connect(&url, quick.clone()).await.unwrap();
    hostile.set(|t| t.stall_queries = true);
    let started = Instant::now();
    let outcomes = client.lookup_many(&[cpi(ALICE), cpi(BOB)]).await;
    // Each query waits its own deadline, and both go out.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    for outcome in outcomes {
        let err = outcome.unwrap_err();
        assert!(
            matches!(err, ClientError::Deadline { rpc: "Query", after } if after == Duration::from_secs(1)),
            "{err:?}"
        );
    }
    let queries = hostile
        .take_log()
        .iter()
        .filter(|s| s.rpc == "Query")
        .count();
    assert_eq!(queries, 2);

    hostile.set(|t| t.stall_config = true);
    let started = Instant::now();
    let err = pir_client::fetch_config(&url, &quick).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            err,
            ClientError::Deadline {
                rpc: "GetConfig",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "GetConfig: no answer from the server within 1 s (--timeout, \
         ClientOptions::request_timeout)"
    );

    // The CLI: `info` against the stalled server exits with that error instead of hanging.
    let url_for_cli = url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pir-client"))
            .args(["info", "--server", &url_for_cli, "--timeout", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GetConfig: no answer from the server within 1 s"),
        "{stderr}"
    );
    task.abort();
}
