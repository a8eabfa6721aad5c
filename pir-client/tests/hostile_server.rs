//! The client against a malicious Discovery server: a tonic service in the test that wraps real
//! `DiscoveryService`s and tampers with what they say (replays an older or another signed
//! configuration, serves planted entries, answers evaluations that are not the DP's, offers
//! unvetted or heavy parameters, never answers) while it records every request it sees.
//!
//! What each test shows: the client refuses rollbacks (an older epoch, or another header of the
//! epoch it verified), reports a planted entry as that one CPI's failure while its requests
//! stay the same as when the target is not asked, refuses an OPRF evaluation whose proof does
//! not hold under the snapshot's key and then sends no query for that batch, sends the same
//! requests whether its CPIs are present, absent or opted out, refuses parameters it should not
//! run, and gives up on answers that never come with a clear error.

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
    error::OprfError,
    identity::OptOut,
    oprf::{ELEMENT_BYTES, OprfKey},
    testing::{
        build_records, dp_key, dp_keys_of, evaluate, issuer, mapping_valid, oprf_key, record_span,
        tiny_scheme, trust,
    },
};
use pir_proto::{
    REASON_KEY, REASON_STALE_EPOCH,
    v1::{
        self, EvaluateRequest, EvaluateResponse, GetConfigRequest, GetConfigResponse, QueryRequest,
        QueryResponse, RegisterKeysRequest, RegisterKeysResponse, RenewKeysRequest,
        RenewKeysResponse,
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
        scheme: Some(tiny_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let mut s = Snapshot::build(mappings, &trust(), &oprf_key(), &opts)
        .unwrap()
        .0;
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

/// One request as the server saw it: the RPC, the message's encoded size, and the size of each
/// query of a Query request or each blinded element of an Evaluate request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    rpc: &'static str,
    bytes: usize,
    parts: Vec<usize>,
}

/// How the hostile server answers an Evaluate request instead of passing it to the DP's key.
#[derive(Clone)]
enum Forged {
    /// Evaluates with a key of its own: a valid proof, for another public key than the
    /// snapshot's.
    OtherKey(OprfKey),
    /// The real evaluation with one bit of its proof flipped.
    FlippedProof,
    /// The real evaluation with its first two elements swapped (each CPI would get another
    /// CPI's output).
    Swapped,
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
    /// Evaluations are forged so, for the next `forged_evaluations` Evaluate requests.
    forge: Option<Forged>,
    forged_evaluations: u32,
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

    /// [`Hostile::new`] over a real service started with `opts`.
    fn with_options(snapshot: Snapshot, opts: ServeOptions) -> Self {
        Self {
            backend: Arc::new(Mutex::new(service_with(snapshot, opts))),
            tamper: Arc::default(),
            log: Arc::default(),
        }
    }

    fn record(&self, rpc: &'static str, message: &impl Message, parts: Vec<usize>) {
        self.log.lock().unwrap().push(Seen {
            rpc,
            bytes: message.encoded_len(),
            parts,
        });
    }

    /// Forges the next `count` evaluations as `forged` says.
    fn forge(&self, forged: Forged, count: u32) {
        self.set(|t| {
            t.forge = Some(forged);
            t.forged_evaluations = count;
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

/// The DP's real service over `snapshot`, holding the fixture OPRF key (it answers evaluations).
fn service(snapshot: Snapshot) -> DiscoveryService {
    service_with(snapshot, ServeOptions::default())
}

fn service_with(snapshot: Snapshot, opts: ServeOptions) -> DiscoveryService {
    DiscoveryService::new(snapshot, opts, Some(oprf_key())).unwrap()
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

    async fn renew_keys(
        &self,
        req: Request<RenewKeysRequest>,
    ) -> Result<Response<RenewKeysResponse>, Status> {
        self.record("RenewKeys", req.get_ref(), Vec::new());
        Discovery::renew_keys(&self.backend(), req).await
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

    async fn evaluate(
        &self,
        req: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let sizes = req.get_ref().blinded.iter().map(Vec::len).collect();
        self.record("Evaluate", req.get_ref(), sizes);
        let forge = {
            let mut t = self.tamper.lock().unwrap();
            match t.forge.clone() {
                Some(forged) if t.forged_evaluations > 0 => {
                    t.forged_evaluations -= 1;
                    Some(forged)
                }
                _ => None,
            }
        };
        let blinded: Vec<[u8; ELEMENT_BYTES]> = req
            .get_ref()
            .blinded
            .iter()
            .map(|b| b.as_slice().try_into().unwrap())
            .collect();
        let mut response = match &forge {
            // A server of its own key answers without asking the DP's.
            Some(Forged::OtherKey(key)) => {
                let evaluation = key
                    .evaluate_blinded(&mut rand::rngs::OsRng, &blinded)
                    .unwrap();
                return Ok(Response::new(evaluation.into()));
            }
            _ => Discovery::evaluate(&self.backend(), req)
                .await?
                .into_inner(),
        };
        match forge {
            Some(Forged::FlippedProof) => response.proof[0] ^= 1,
            Some(Forged::Swapped) => response.evaluated.swap(0, 1),
            _ => {}
        }
        Ok(Response::new(response))
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
    assert_layout_mismatch(&err);

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

/// The bucket of `cpi` in `snapshot` (found with the fixture OPRF key, as only the DP can).
fn bucket_of(snapshot: &Snapshot, cpi: &Cpi) -> usize {
    let layout = snapshot.config().layout().clone();
    layout.locate(evaluate(cpi).output()).location().bucket.0 as usize
}

/// Rewrites `target`'s sealed record in `snapshot` as a server holding the OPRF key could: the
/// record is opened, its chat.example mapping made to name another MSP of the dictionary and
/// sealed again, so the record opens but the issuer's signature no longer covers its mapping.
/// Returns the bucket.
fn plant(snapshot: &mut Snapshot, target: &Cpi) -> usize {
    let layout = snapshot.config().layout().clone();
    let chat = layout
        .msps
        .iter()
        .position(|m| m == "chat.example")
        .unwrap() as u8;
    assert!(layout.msps.len() >= 2, "another MSP to name");
    let secrets = layout.locate(evaluate(target).output());
    let bucket = secrets.location().bucket.0 as usize;
    snapshot
        .danger_overwrite_bucket(bucket, |item| {
            let (_, at, len) = record_span(item, &secrets).expect("the target's record");
            let mut record = secrets.open(&item[at..at + len]).unwrap();
            // The record's first mapping (by MSP: chat.example sorts first here): its flags,
            // then its MSP's index.
            assert_eq!(
                record[1], chat,
                "the target's first mapping is at chat.example"
            );
            record[1] = (chat + 1) % layout.msps.len() as u8;
            item[at..at + len].copy_from_slice(&secrets.seal(&record).unwrap());
        })
        .unwrap();
    bucket
}

/// A server that plants an entry failing verification under a target CPI's tag learns nothing
/// from the client's requests: the batch with the target and a batch without it send the same
/// requests (count, order, sizes), the target's lookup alone fails, and the others succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_entry_fails_its_cpi_alone_and_changes_no_request() {
    let mut planted = snapshot(1, 1, None);
    let target = cpi(BOB);
    // Bob's mapping says "chat.example"; the server makes it "chet.example" (the issuer's
    // signature no longer covers it).
    let bucket = plant(&mut planted, &target);
    let other_in_bucket = [ALICE, CAROL]
        .into_iter()
        .any(|c| bucket_of(&planted, &cpi(c)) == bucket);
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

    // One evaluation of the three CPIs, then their three queries.
    let rpcs: Vec<&str> = seen_with.iter().map(|s| s.rpc).collect();
    assert_eq!(
        rpcs,
        ["Evaluate", "Query", "Query", "Query"],
        "{seen_with:?}"
    );
    assert_eq!(seen_with[0].parts, [ELEMENT_BYTES; 3]);
    assert_eq!(seen_with, seen_without);
    // A batch where the target comes first still sends everything after it.
    let target_first = [target.clone(), cpi(ALICE), cpi(CAROL)];
    let outcomes = client.lookup_many(&target_first).await;
    assert!(outcomes[0].is_err() && outcomes[1].is_ok() && outcomes[2].is_ok());
    assert_eq!(hostile.take_log(), seen_without);
    task.abort();
}

// ---------------------------------------------------------------------- forged evaluations

/// Another OPRF key than the DP's: what a server that evaluates on its own uses.
fn stranger_oprf_key() -> OprfKey {
    OprfKey::derive(&[0x5a; 32], b"not the DP's OPRF key").unwrap()
}

/// The RPCs of a log, in order.
fn rpcs(log: &[Seen]) -> Vec<&'static str> {
    log.iter().map(|s| s.rpc).collect()
}

/// What a lookup refused for its batch's evaluation says: the proof did not verify under the
/// snapshot's OPRF key.
fn refused_proof(outcome: &pir_client::Result<pir_client::LookupOutcome>, cpi: &Cpi) {
    let proof = ClientError::Evaluation {
        source: CoreError::Oprf(OprfError::Proof),
    };
    match outcome {
        Err(ClientError::BatchEvaluation { cpi: got, source }) => {
            assert_eq!(got, cpi.as_str());
            assert!(
                matches!(
                    **source,
                    ClientError::Evaluation {
                        source: CoreError::Oprf(OprfError::Proof)
                    }
                ),
                "{source}"
            );
            assert_eq!(source.to_string(), proof.to_string());
        }
        other => panic!("{cpi}: expected a refused evaluation, got {other:?}"),
    }
}

/// An evaluation whose proof does not hold under the snapshot's OPRF key (evaluated with
/// another key, a flipped proof bit, two outputs swapped) is refused; the client asks for the
/// configuration again in case the DP rotated its key, tries at most `MAX_ATTEMPTS` times, and
/// sends no query for the CPIs of that evaluation. Once the server stops forging, lookups work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_evaluation_is_refused_and_no_query_follows() {
    let hostile = Hostile::new(snapshot(1, 1, None));
    let (url, task) = hostile.serve().await;
    let mut client = PirClient::connect(&url, options()).await.unwrap();
    hostile.take_log();
    // Every attempt: the evaluation, refused, then the configuration, fetched again.
    let mut refused = Vec::new();
    for _ in 1..pir_client::MAX_ATTEMPTS {
        refused.extend(["Evaluate", "GetConfig"]);
    }
    refused.push("Evaluate");

    for forged in [Forged::OtherKey(stranger_oprf_key()), Forged::FlippedProof] {
        hostile.forge(forged, u32::MAX);
        let alice = cpi(ALICE);
        refused_proof(&client.lookup(&alice).await, &alice);
        assert_eq!(rpcs(&hostile.take_log()), refused);
    }
    // Swapped outputs, in a batch: every CPI of it is refused, none is queried.
    hostile.forge(Forged::Swapped, u32::MAX);
    let batch = [cpi(ALICE), cpi(BOB), cpi("tel:+14155550199")];
    let outcomes = client.lookup_many(&batch).await;
    for (outcome, cpi) in outcomes.iter().zip(&batch) {
        refused_proof(outcome, cpi);
    }
    let log = hostile.take_log();
    assert_eq!(rpcs(&log), refused);
    assert!(
        log.iter()
            .all(|s| s.rpc != "Evaluate" || s.parts.len() == 3)
    );

    // An honest server again: the same client finds what is there.
    hostile.set(|t| t.forge = None);
    let outcomes = client.lookup_many(&batch).await;
    assert!(outcomes[0].as_ref().unwrap().result.found());
    assert!(outcomes[1].as_ref().unwrap().result.found());
    assert!(!outcomes[2].as_ref().unwrap().result.found());
    assert_eq!(
        rpcs(&hostile.take_log()),
        ["Evaluate", "Query", "Query", "Query"]
    );
    task.abort();
}

/// A refused evaluation fails its own request's CPIs only: with a batch limit of 2, the first
/// two CPIs' evaluation is forged (every attempt) and they get no query, while the third CPI's
/// evaluation, a request of its own, is honest and its query goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_evaluation_sends_no_query_for_its_own_cpis() {
    let two_per_request = ServeOptions {
        max_queries_per_request: 2,
        ..ServeOptions::default()
    };
    let hostile = Hostile::with_options(snapshot(1, 1, None), two_per_request);
    let (url, task) = hostile.serve().await;
    let mut client = PirClient::connect(&url, options()).await.unwrap();
    hostile.take_log();
    hostile.forge(Forged::FlippedProof, pir_client::MAX_ATTEMPTS);
    let batch = [cpi(ALICE), cpi(BOB), cpi(CAROL)];
    let outcomes = client.lookup_many(&batch).await;
    refused_proof(&outcomes[0], &batch[0]);
    refused_proof(&outcomes[1], &batch[1]);
    assert_eq!(
        outcomes[2].as_ref().unwrap().result.msps(),
        ["mail.example"]
    );
    let log = hostile.take_log();
    let shape: Vec<(&str, usize)> = log.iter().map(|s| (s.rpc, s.parts.len())).collect();
    assert_eq!(
        shape,
        [
            ("Evaluate", 2),
            ("GetConfig", 0),
            ("Evaluate", 2),
            ("GetConfig", 0),
            ("Evaluate", 2),
            ("Evaluate", 1),
            ("Query", 1),
        ]
    );
    task.abort();
}

/// A server evaluating with a key of its own that also names that key in its configuration
/// (without the DP's header, which says otherwise) is refused by a client with the DP's keys.
/// Without them, as documented, the client takes the configuration as stated: the proofs then
/// hold, and the snapshot's CPIs, sealed under the DP's key, come back "not found" (a server
/// can omit, never forge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_its_own_oprf_key_is_caught_by_the_dp_header() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = stranger_oprf_key();
    let hostile = Hostile::new(signed(1, 1));
    let mut lying = config_of(&signed(1, 1));
    lying.layout.as_mut().unwrap().oprf_public_key = stranger.public().to_bytes().to_vec();
    // Kept, the genuine header would contradict the layout: every client refuses that.
    let with_header = lying.clone();
    lying.snapshot_header.clear();
    hostile.set(|t| t.config = Some(with_header));
    let (url, task) = hostile.serve().await;
    let err = PirClient::connect(&url, options()).await.unwrap_err();
    assert_layout_mismatch(&err);
    hostile.set(|t| t.config = Some(lying));
    let err = PirClient::connect(&url, dp_options(&dir.path().join("client.keys")))
        .await
        .unwrap_err();
    assert!(matches!(refusal(err), SnapshotRefusal::NoHeader));

    let mut unprotected = PirClient::connect(&url, options()).await.unwrap();
    hostile.forge(Forged::OtherKey(stranger), u32::MAX);
    for outcome in unprotected.lookup_many(&[cpi(ALICE), cpi(BOB)]).await {
        let outcome = outcome.unwrap();
        assert!(!outcome.result.found(), "{outcome:?}");
    }
    task.abort();
}

// ------------------------------------------------------------------------ uniform traffic

const DAVE: &str = "tel:+14155550142";
const ERIN: &str = "mailto:erin@example.net";

/// A signed opt-out of `cpi`, valid for ever (the client checks it against the real clock).
fn opted_out(cpi: &str) -> OptOut {
    OptOut::sign(self::cpi(cpi), 0, u64::MAX, &issuer()).unwrap()
}

/// Alice at two MSPs, Bob and Carol at one each, Dave and Erin opted out.
fn with_opt_outs() -> Snapshot {
    let mappings = vec![
        mapping(ALICE, "chat.example"),
        mapping(ALICE, "talk.example"),
        mapping(BOB, "chat.example"),
        mapping(CAROL, "mail.example"),
    ];
    let opts = BuildOptions {
        epoch: 1,
        now: pir_core::unix_now(),
        salt: Some([4; 32]),
        scheme: Some(tiny_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    build_records(mappings, vec![opted_out(DAVE), opted_out(ERIN)], &opts)
}

/// What the server sees of a batch of three lookups does not depend on what the CPIs are:
/// present (one or two MSPs), absent, opted out or a mix send the same requests, in the same
/// order, of the same sizes (with a batch limit of 2: two evaluations, of two CPIs and of one,
/// then the three queries), and cost the client the same bytes. One lookup alone likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_the_same_for_present_absent_and_opted_out_cpis() {
    let two_per_request = ServeOptions {
        max_queries_per_request: 2,
        ..ServeOptions::default()
    };
    let hostile = Hostile::with_options(with_opt_outs(), two_per_request);
    let (url, task) = hostile.serve().await;
    let mut client = PirClient::connect(&url, options()).await.unwrap();
    hostile.take_log();

    let batches = [
        [ALICE, BOB, CAROL],
        [
            "tel:+14155550199",
            "mailto:nobody@example.org",
            "tel:+442079460000",
        ],
        [DAVE, ERIN, DAVE],
        [ERIN, "tel:+14155550199", ALICE],
    ];
    let mut logs = Vec::new();
    let mut costs = Vec::new();
    for batch in batches {
        let cpis: Vec<Cpi> = batch.into_iter().map(cpi).collect();
        let outcomes: Vec<_> = client
            .lookup_many(&cpis)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for (outcome, name) in outcomes.iter().zip(batch) {
            let r = &outcome.result;
            match name {
                ALICE => assert_eq!(r.msps(), ["chat.example", "talk.example"]),
                BOB => assert_eq!(r.msps(), ["chat.example"]),
                CAROL => assert_eq!(r.msps(), ["mail.example"]),
                DAVE | ERIN => assert!(r.opted_out() && !r.found(), "{name}: {r:?}"),
                _ => assert!(!r.opted_out() && !r.found(), "{name}: {r:?}"),
            }
            costs.push((outcome.bytes_sent, outcome.bytes_received));
        }
        logs.push(hostile.take_log());
    }
    let query_bytes = tiny_scheme().message_sizes().unwrap().query;
    let shape: Vec<(&str, Vec<usize>)> = logs[0].iter().map(|s| (s.rpc, s.parts.clone())).collect();
    assert_eq!(
        shape,
        [
            ("Evaluate", vec![ELEMENT_BYTES; 2]),
            ("Evaluate", vec![ELEMENT_BYTES; 1]),
            ("Query", vec![query_bytes]),
            ("Query", vec![query_bytes]),
            ("Query", vec![query_bytes]),
        ]
    );
    for (log, batch) in logs.iter().zip(batches) {
        assert_eq!(*log, logs[0], "{batch:?}");
    }
    // Each lookup's share of its evaluation differs with its request's size, not with its CPI.
    for (i, cost) in costs.iter().enumerate() {
        assert_eq!(*cost, costs[i % 3], "lookup {i}");
    }

    let mut singles = Vec::new();
    for name in [ALICE, "tel:+14155550199", DAVE] {
        let outcome = client.lookup(&cpi(name)).await.unwrap();
        singles.push((
            hostile.take_log(),
            outcome.bytes_sent,
            outcome.bytes_received,
        ));
    }
    assert_eq!(rpcs(&singles[0].0), ["Evaluate", "Query"]);
    assert_eq!(singles[1], singles[0]);
    assert_eq!(singles[2], singles[0]);
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
    let tiny = snapshot(1, 1, None);
    let mut config = config_of(&tiny);
    config.scheme = Some((&vetted).into());
    let layout = pir_core::KeywordLayout::new(
        [1; 32],
        vetted.num_items() as u32,
        tiny.config().layout().num_groups,
        oprf_key().public(),
    )
    .unwrap();
    config.layout = Some((&layout).into());
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

/// `err` refuses a configuration whose layout differs from the DP-signed header's.
fn assert_layout_mismatch(err: &ClientError) {
    assert!(
        matches!(
            err,
            ClientError::InvalidServerConfig(pir_proto::ConvertError::HeaderMismatch {
                field: "layout"
            })
        ),
        "{err:?}"
    );
}
