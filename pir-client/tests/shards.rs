//! The sharded client against real servers of a sharded directory on loopback ports: 4 shards
//! served by two processes of 2 shards each, plus a replica of shard 1. Every shard's CPIs are
//! found (and absent ones absent) in both privacy modes; with padding every shard receives as
//! many queries; a replica killed mid-run is failed over with no wrong answer; a manifest the
//! trusted DP did not sign is refused; an endpoint answering with another shard's header is
//! refused.
//!
//! Each process is a real `DiscoveryService` behind a wrapper that counts the queries of each
//! shard it receives, its registrations and renewals, records the blinded elements it is asked
//! to evaluate and, when told, passes another shard's configuration or answer off as the one
//! asked for, or refuses registrations or evaluations as UNAVAILABLE (a key store or an
//! evaluator that is down).
//!
//! Also: the keys' registrations are renewed before they expire at every endpoint (a short
//! TTL), a replica whose re-registration fails is failed over, and evaluations fail over among
//! several evaluators, blinded afresh, with an error naming them when none answers.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pir_client::{ClientError, ClientOptions, ShardMap, ShardPrivacy, ShardedClient};
use pir_core::{
    Cpi, DpKey,
    snapshot::{MANIFEST_FILE_NAME, Manifest, shard_file_name},
    testing::{
        NOW, build_options, build_shards, bulk_mappings, dp_key, dp_keys_of, evaluate, oprf_key,
        tiny_scheme, trust,
    },
};
use pir_proto::v1::{
    EvaluateRequest, EvaluateResponse, GetConfigRequest, GetConfigResponse, QueryRequest,
    QueryResponse, RegisterKeysRequest, RegisterKeysResponse, RenewKeysRequest, RenewKeysResponse,
    discovery_server::{Discovery, DiscoveryServer},
};
use pir_server::{Directory, DiscoveryService, ServeOptions, ShardSelection};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

const SHARDS: u32 = 4;
const COUNT: usize = 40;

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:u{i}@example.org")).unwrap()
}

fn home(cpi: &Cpi) -> u32 {
    pir_core::keyword::shard_of(evaluate(cpi).output(), SHARDS)
}

/// Writes 4 shards of `COUNT` mappings and their manifest signed by `signer` into `dir`.
fn write_directory(dir: &Path, signer: &DpKey) {
    let shards = build_shards(
        bulk_mappings(COUNT),
        &build_options(tiny_scheme(), 3),
        SHARDS,
    );
    let mut files = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let name = shard_file_name(i as u32);
        s.write(&dir.join(&name)).unwrap();
        files.push((name, s.header().clone()));
    }
    let mut manifest = Manifest::of_shards(files, None, NOW).unwrap();
    manifest.sign(signer).unwrap();
    manifest.write(&dir.join(MANIFEST_FILE_NAME)).unwrap();
}

/// A server process of some shards: the real service, wrapped to count and to lie.
#[derive(Clone)]
struct Process {
    backend: DiscoveryService,
    /// Queries answered, by the shard they name.
    queries: Arc<Mutex<BTreeMap<u32, usize>>>,
    /// Shard asked for → shard whose configuration (`.0`) or answers (`.1`) are passed off as
    /// its own.
    swap_config: Arc<Mutex<Option<(u32, u32)>>>,
    swap_query: Arc<Mutex<Option<(u32, u32)>>>,
    /// RegisterKeys and RenewKeys calls received (refused ones included).
    registers: Arc<AtomicUsize>,
    renewals: Arc<AtomicUsize>,
    /// Refuse RegisterKeys as UNAVAILABLE (its key store down).
    refuse_registrations: Arc<AtomicBool>,
    /// The blinded elements of every Evaluate received, and whether to refuse it as
    /// UNAVAILABLE once recorded.
    blinded: Arc<Mutex<Vec<Vec<u8>>>>,
    refuse_evaluations: Arc<AtomicBool>,
}

fn swapped(swap: &Mutex<Option<(u32, u32)>>, shard: u32) -> u32 {
    match *swap.lock().unwrap() {
        Some((from, to)) if from == shard => to,
        _ => shard,
    }
}

#[tonic::async_trait]
impl Discovery for Process {
    async fn get_config(
        &self,
        req: Request<GetConfigRequest>,
    ) -> Result<Response<GetConfigResponse>, Status> {
        let mut req = req.into_inner();
        req.shard = req.shard.map(|s| swapped(&self.swap_config, s));
        self.backend.get_config(Request::new(req)).await
    }

    async fn register_keys(
        &self,
        req: Request<RegisterKeysRequest>,
    ) -> Result<Response<RegisterKeysResponse>, Status> {
        self.registers.fetch_add(1, Ordering::SeqCst);
        if self.refuse_registrations.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the key store (test) is unavailable"));
        }
        self.backend.register_keys(req).await
    }

    async fn renew_keys(
        &self,
        req: Request<RenewKeysRequest>,
    ) -> Result<Response<RenewKeysResponse>, Status> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        self.backend.renew_keys(req).await
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let mut req = req.into_inner();
        let shard = req.shard;
        req.shard = swapped(&self.swap_query, shard);
        let answer = self.backend.query(Request::new(req)).await;
        // Answered ones only: a first query to a process that does not know the keys yet is
        // refused and sent again once they are registered.
        if answer.is_ok() {
            *self.queries.lock().unwrap().entry(shard).or_default() += 1;
        }
        answer
    }

    async fn evaluate(
        &self,
        req: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        self.blinded
            .lock()
            .unwrap()
            .extend(req.get_ref().blinded.iter().cloned());
        if self.refuse_evaluations.load(Ordering::SeqCst) {
            return Err(Status::unavailable("evaluator overloaded (test)"));
        }
        self.backend.evaluate(req).await
    }
}

/// A running process: its URL, and how to kill it.
struct Running {
    url: String,
    process: Process,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn queries(&self) -> BTreeMap<u32, usize> {
        self.process.queries.lock().unwrap().clone()
    }

    fn registers(&self) -> usize {
        self.process.registers.load(Ordering::SeqCst)
    }

    fn renewals(&self) -> usize {
        self.process.renewals.load(Ordering::SeqCst)
    }

    /// Stops serving and closes its connections.
    async fn kill(mut self) {
        let _ = self.kill.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// Serves `shards` of the directory in `dir` (its manifest checked against the DP key) on a
/// loopback port, with the fixture OPRF key and no rate limits.
async fn serve(dir: &Path, shards: &str, dp: &DpKey) -> Running {
    serve_for(dir, shards, dp, ServeOptions::default().key_ttl).await
}

/// [`serve`], registrations lasting `key_ttl` (each process has a key store of its own).
async fn serve_for(dir: &Path, shards: &str, dp: &DpKey, key_ttl: Duration) -> Running {
    let directory = Directory::load_sharded(
        &dir.join(MANIFEST_FILE_NAME),
        &shards.parse::<ShardSelection>().unwrap(),
        Some(&dp_keys_of(dp)),
        None,
    )
    .unwrap();
    let options = ServeOptions {
        per_key_rate: None,
        per_peer_rate: None,
        per_peer_registrations: None,
        global_registrations_per_second: None,
        per_key_evaluations: None,
        per_peer_evaluations: None,
        global_evaluations_per_second: None,
        key_ttl,
        ..ServeOptions::default()
    };
    let process = Process {
        backend: DiscoveryService::new(directory, options, Some(oprf_key())).unwrap(),
        queries: Arc::default(),
        swap_config: Arc::default(),
        swap_query: Arc::default(),
        registers: Arc::default(),
        renewals: Arc::default(),
        refuse_registrations: Arc::default(),
        blinded: Arc::default(),
        refuse_evaluations: Arc::default(),
    };
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let incoming = TcpIncoming::bind(addr).unwrap();
    let addr = incoming.local_addr().unwrap();
    let service = DiscoveryServer::new(process.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = killed.await;
            })
            .await
            .unwrap();
    });
    Running {
        url: format!("http://{addr}"),
        process,
        kill: Some(kill),
        task,
    }
}

/// The deployment: A serves shards 0-1, B shards 2-3, C is a second replica of shard 1.
struct Deployment {
    _dir: tempfile::TempDir,
    a: Running,
    b: Running,
    c: Running,
    map: ShardMap,
}

async fn deploy() -> Deployment {
    deploy_for(ServeOptions::default().key_ttl).await
}

/// [`deploy`], registrations lasting `key_ttl`.
async fn deploy_for(key_ttl: Duration) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    write_directory(dir.path(), &dp_key());
    let a = serve_for(dir.path(), "0-1", &dp_key(), key_ttl).await;
    let b = serve_for(dir.path(), "2-3", &dp_key(), key_ttl).await;
    let c = serve_for(dir.path(), "1", &dp_key(), key_ttl).await;
    let text = format!(
        "# shard replicas\n0 {a}\n1 {c} {a}\n2 {b}\n3 {b}\n",
        a = a.url,
        b = b.url,
        c = c.url
    );
    let map = ShardMap::parse(&text, Path::new("test.map")).unwrap();
    Deployment {
        _dir: dir,
        a,
        b,
        c,
        map,
    }
}

impl Deployment {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            shard_map: Some(self.map.clone()),
            ..ClientOptions::new(trust())
                .allowing_custom_params()
                .with_dp_keys(dp_keys_of(&dp_key()))
        }
    }

    /// Queries received per shard, over every process.
    fn queries(&self) -> BTreeMap<u32, usize> {
        let mut all = BTreeMap::new();
        for p in [&self.a, &self.b, &self.c] {
            for (shard, n) in p.queries() {
                *all.entry(shard).or_default() += n;
            }
        }
        all
    }
}

/// Two present CPIs of every shard, then three absent ones.
fn sample() -> (Vec<Cpi>, usize) {
    let mut per_shard: BTreeMap<u32, Vec<Cpi>> = BTreeMap::new();
    for i in 0..COUNT {
        let c = cpi(i);
        let list = per_shard.entry(home(&c)).or_default();
        if list.len() < 2 {
            list.push(c);
        }
    }
    assert_eq!(
        per_shard.len(),
        SHARDS as usize,
        "the sample spans every shard"
    );
    let mut cpis: Vec<Cpi> = per_shard.into_values().flatten().collect();
    let present = cpis.len();
    cpis.extend((0..3).map(|i| cpi(COUNT + 100 + i)));
    (cpis, present)
}

/// Looks `cpis` up and checks the first `present` are found at chat.example, the rest absent.
async fn check_lookups(client: &mut ShardedClient, cpis: &[Cpi], present: usize) {
    let outcomes = client.lookup_many(cpis).await;
    for (i, (cpi, outcome)) in cpis.iter().zip(outcomes).enumerate() {
        let outcome = outcome.unwrap_or_else(|e| panic!("{cpi} (shard {}): {e}", home(cpi)));
        assert_eq!(&outcome.result.cpi, cpi);
        if i < present {
            assert_eq!(outcome.result.msps(), ["chat.example"], "{cpi}");
        } else {
            assert!(!outcome.result.found(), "{cpi} is absent");
        }
    }
}

fn histogram(cpis: &[Cpi]) -> BTreeMap<u32, usize> {
    let mut h = BTreeMap::new();
    for c in cpis {
        *h.entry(home(c)).or_default() += 1;
    }
    h
}

fn delta(after: &BTreeMap<u32, usize>, before: &BTreeMap<u32, usize>) -> Vec<usize> {
    (0..SHARDS)
        .map(|s| after.get(&s).copied().unwrap_or(0) - before.get(&s).copied().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn every_shards_cpis_are_found_in_both_privacy_modes() {
    let d = deploy().await;
    let (cpis, present) = sample();

    // Shard mode, no padding: each CPI's query to its shard only; the counts are the batch's
    // histogram of shards.
    let mut client = ShardedClient::connect(&d.a.url, d.options()).await.unwrap();
    assert_eq!(client.manifest().unwrap().count(), SHARDS);
    assert_eq!(
        client.shard_endpoints()[1],
        [d.c.url.clone(), d.a.url.clone()]
    );
    let before = d.queries();
    check_lookups(&mut client, &cpis, present).await;
    let h = histogram(&cpis);
    let expected: Vec<usize> = (0..SHARDS)
        .map(|s| h.get(&s).copied().unwrap_or(0))
        .collect();
    assert_eq!(delta(&d.queries(), &before), expected);
    // Both replicas of shard 1 took queries (round-robin), each named shard 1.
    assert!(d.c.queries().keys().all(|&s| s == 1));

    // All-shards mode: every CPI queried in every shard, only its own decoded.
    let mut client = ShardedClient::connect(
        &d.a.url,
        ClientOptions {
            shard_privacy: ShardPrivacy::AllShards,
            ..d.options()
        },
    )
    .await
    .unwrap();
    let before = d.queries();
    check_lookups(&mut client, &cpis, present).await;
    assert_eq!(
        delta(&d.queries(), &before),
        vec![cpis.len(); SHARDS as usize]
    );
}

#[tokio::test]
async fn padding_gives_every_shard_the_same_number_of_queries() {
    let d = deploy().await;
    // A batch lopsided on purpose: three CPIs of one shard, one of another.
    let (sample, _) = sample();
    let busy = home(&sample[0]);
    let mut cpis: Vec<Cpi> = (0..COUNT)
        .map(cpi)
        .filter(|c| home(c) == busy)
        .take(3)
        .collect();
    cpis.push(sample.iter().find(|c| home(c) != busy).unwrap().clone());
    let mut client = ShardedClient::connect(
        &d.a.url,
        ClientOptions {
            pad_shards: true,
            ..d.options()
        },
    )
    .await
    .unwrap();
    let before = d.queries();
    check_lookups(&mut client, &cpis, cpis.len()).await;
    assert_eq!(delta(&d.queries(), &before), vec![3; SHARDS as usize]);
}

#[tokio::test]
async fn a_killed_replica_is_failed_over_with_no_wrong_answer() {
    let Deployment { _dir, a, b, c, map } = deploy().await;
    let options = ClientOptions {
        shard_map: Some(map),
        ..ClientOptions::new(trust())
            .allowing_custom_params()
            .with_dp_keys(dp_keys_of(&dp_key()))
    };
    let mut client = ShardedClient::connect(&a.url, options).await.unwrap();
    let ones: Vec<Cpi> = (0..COUNT)
        .map(cpi)
        .filter(|c| home(c) == 1)
        .take(4)
        .collect();
    assert!(ones.len() >= 2);
    let absent = cpi(COUNT + 7);
    let mut batch = ones.clone();
    batch.push(absent.clone());
    let n = batch.len() - 1;
    check_lookups(&mut client, &batch, n).await;
    let seen_by_c = c.queries().get(&1).copied().unwrap_or(0);
    assert!(seen_by_c > 0, "the replica took its share before it died");
    let c_queries = Arc::clone(&c.process.queries);
    c.kill().await;
    // Every lookup of shard 1 now fails over to A, with the right answers.
    for _ in 0..3 {
        check_lookups(&mut client, &batch, n).await;
    }
    assert_eq!(c_queries.lock().unwrap().get(&1).copied(), Some(seen_by_c));
    // With every replica of shard 2 dead, its lookups fail, naming the shard and what was
    // tried; the other shards' still answer.
    let b_url = b.url.clone();
    b.kill().await;
    let two = (0..COUNT).map(cpi).find(|c| home(c) == 2).unwrap();
    let outcomes = client.lookup_many(&[two, ones[0].clone()]).await;
    match &outcomes[0] {
        Err(ClientError::ShardUnavailable { shard: 2, tried }) => {
            assert_eq!(tried.len(), 3, "{tried:?}");
            assert!(tried.iter().all(|t| t.starts_with(&b_url)), "{tried:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        outcomes[1].as_ref().unwrap().result.msps(),
        ["chat.example"]
    );
    let text = outcomes[0].as_ref().unwrap_err().to_string();
    assert!(text.starts_with("shard 2: no replica answered ("), "{text}");
}

#[tokio::test]
async fn a_manifest_not_signed_by_the_trusted_dp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = DpKey::from_seed(&[9; 32]);
    write_directory(dir.path(), &other);
    let a = serve(dir.path(), "all", &other).await;
    let options = ClientOptions::new(trust())
        .allowing_custom_params()
        .with_dp_keys(dp_keys_of(&dp_key()));
    let err = ShardedClient::connect(&a.url, options).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::SnapshotRefused(pir_client::SnapshotRefusal::ManifestSignature(_))
        ),
        "{err}"
    );
    // Trusting that DP instead, the same endpoint serves every shard with no map.
    let options = ClientOptions::new(trust())
        .allowing_custom_params()
        .with_dp_keys(dp_keys_of(&other));
    let mut client = ShardedClient::connect(&a.url, options).await.unwrap();
    let (cpis, present) = sample();
    check_lookups(&mut client, &cpis, present).await;
}

#[tokio::test]
async fn a_shard_endpoint_answering_with_another_shards_header_is_refused() {
    let d = deploy().await;
    let two = (0..COUNT).map(cpi).find(|c| home(c) == 2).unwrap();
    let zero = (0..COUNT).map(cpi).find(|c| home(c) == 0).unwrap();

    // B describes shard 3 when asked for shard 2.
    *d.b.process.swap_config.lock().unwrap() = Some((2, 3));
    let mut client = ShardedClient::connect(&d.a.url, d.options()).await.unwrap();
    let outcomes = client.lookup_many(&[two.clone(), zero.clone()]).await;
    let err = outcomes[0].as_ref().unwrap_err();
    assert!(
        matches!(err, ClientError::ShardUnavailable { shard: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("describes shard 3 instead"),
        "{err}"
    );
    assert!(outcomes[1].as_ref().unwrap().result.found());

    // B describes shard 2 truthfully but answers its queries from shard 3.
    *d.b.process.swap_config.lock().unwrap() = None;
    *d.b.process.swap_query.lock().unwrap() = Some((2, 3));
    let mut client = ShardedClient::connect(&d.a.url, d.options()).await.unwrap();
    let outcomes = client.lookup_many(&[two, zero]).await;
    let err = outcomes[0].as_ref().unwrap_err();
    assert!(
        err.to_string().contains("answer from another snapshot"),
        "{err}"
    );
    assert!(outcomes[1].as_ref().unwrap().result.found());
}

/// Without a shard map, an endpoint that does not serve every shard is refused at connect,
/// naming the flags; a PirClient refuses one shard of many.
#[tokio::test]
async fn without_a_map_every_shard_must_be_served_by_the_endpoint() {
    let d = deploy().await;
    let options = ClientOptions::new(trust()).allowing_custom_params();
    let err = ShardedClient::connect(&d.a.url, options.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--shard-map"), "{err}");
    let err = pir_client::PirClient::connect(&d.a.url, options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ShardedDirectory { count: 4, .. }),
        "{err}"
    );
}

/// With registrations lasting 3 s, a client looking up every shard for three lifetimes keeps
/// its keys registered at every endpoint by renewing them (RenewKeys, before they expire):
/// after the first registration at each process, none registers the keys again.
#[tokio::test]
async fn registrations_are_renewed_at_every_endpoint_before_they_expire() {
    let ttl = Duration::from_secs(3);
    let d = deploy_for(ttl).await;
    let (cpis, present) = sample();
    let mut client = ShardedClient::connect(&d.a.url, d.options()).await.unwrap();
    // The first batch registers the keys wherever they are not known (each process has a
    // store of its own): A at connect, B and C when they say unknown-key.
    check_lookups(&mut client, &cpis, present).await;
    let registered = [d.a.registers(), d.b.registers(), d.c.registers()];
    assert_eq!(registered, [1, 1, 1]);
    let started = Instant::now();
    while started.elapsed() < 3 * ttl {
        check_lookups(&mut client, &cpis, present).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        [d.a.registers(), d.b.registers(), d.c.registers()],
        registered,
        "no registration expired, so none was made again"
    );
    for (name, p) in [("A", &d.a), ("B", &d.b), ("C", &d.c)] {
        assert!(p.renewals() >= 2, "{name} renewed {} times", p.renewals());
    }
}

/// A replica that does not know the keys and fails to register them (its key store down:
/// UNAVAILABLE) is left for the shard's other replica, which answers.
#[tokio::test]
async fn a_replica_whose_registration_fails_is_failed_over() {
    let d = deploy().await;
    // C, a replica of shard 1 that A's registration at connect does not reach, cannot register.
    d.c.process
        .refuse_registrations
        .store(true, Ordering::SeqCst);
    let mut client = ShardedClient::connect(&d.a.url, d.options()).await.unwrap();
    let ones: Vec<Cpi> = (0..COUNT)
        .map(cpi)
        .filter(|c| home(c) == 1)
        .take(4)
        .collect();
    assert!(ones.len() >= 2, "round-robin sends one of them to C first");
    for _ in 0..2 {
        check_lookups(&mut client, &ones, ones.len()).await;
    }
    assert!(d.c.registers() >= 1, "C was asked to register the keys");
    assert_eq!(d.c.queries().get(&1), None, "C answered nothing");
    // With C's store back, C registers them and takes its share.
    d.c.process
        .refuse_registrations
        .store(false, Ordering::SeqCst);
    check_lookups(&mut client, &ones, ones.len()).await;
    assert!(d.c.queries().get(&1).copied().unwrap_or(0) > 0);
}

/// Evaluations fail over among evaluators: the first refusing (UNAVAILABLE) or dead, the
/// second evaluates, with elements blinded afresh; with both dead, lookups fail naming both.
#[tokio::test]
async fn evaluations_fail_over_among_evaluators() {
    let d = deploy().await;
    let dir = tempfile::tempdir().unwrap();
    write_directory(dir.path(), &dp_key());
    // Two evaluators of the same DP, serving no shard of theirs that the client queries.
    let e1 = serve(dir.path(), "0", &dp_key()).await;
    let e2 = serve(dir.path(), "0", &dp_key()).await;
    let options = d
        .options()
        .with_evaluators([e1.url.clone(), e2.url.clone()]);
    let mut client = ShardedClient::connect(&d.a.url, options).await.unwrap();
    let (cpis, present) = sample();
    check_lookups(&mut client, &cpis, present).await;
    assert!(!e1.process.blinded.lock().unwrap().is_empty());
    assert!(
        e2.process.blinded.lock().unwrap().is_empty(),
        "E1 answers while it can"
    );

    // E1 refuses once it has seen the elements: E2 gets elements blinded afresh.
    e1.process.refuse_evaluations.store(true, Ordering::SeqCst);
    let before = e1.process.blinded.lock().unwrap().len();
    check_lookups(&mut client, &cpis, present).await;
    let seen_by_e1: Vec<Vec<u8>> = e1.process.blinded.lock().unwrap()[before..].to_vec();
    let seen_by_e2 = e2.process.blinded.lock().unwrap().clone();
    assert_eq!(seen_by_e1.len(), cpis.len());
    // E2 did not know the keys: it refused once (unknown-key), then evaluated after they were
    // registered there. Every request, E1's and both of E2's, was blinded afresh.
    assert_eq!(seen_by_e2.len(), 2 * cpis.len());
    let distinct: std::collections::BTreeSet<&Vec<u8>> =
        seen_by_e1.iter().chain(&seen_by_e2).collect();
    assert_eq!(
        distinct.len(),
        seen_by_e1.len() + seen_by_e2.len(),
        "a retry reuses no blinded element"
    );
    e1.process.refuse_evaluations.store(false, Ordering::SeqCst);

    // E2, now the one evaluations go to, killed: E1 evaluates again; then E1 killed too.
    let (e1_url, e2_url) = (e1.url.clone(), e2.url.clone());
    let e1_blinded = Arc::clone(&e1.process.blinded);
    let before = e1_blinded.lock().unwrap().len();
    e2.kill().await;
    for _ in 0..2 {
        check_lookups(&mut client, &cpis, present).await;
    }
    assert_eq!(e1_blinded.lock().unwrap().len(), before + 2 * cpis.len());
    e1.kill().await;
    let outcomes = client.lookup_many(&cpis[..1]).await;
    let err = outcomes[0].as_ref().unwrap_err();
    let ClientError::BatchEvaluation { source, .. } = err else {
        panic!("{err:?}");
    };
    let ClientError::EvaluatorsUnavailable { tried } = &**source else {
        panic!("{source:?}");
    };
    assert_eq!(tried.len(), 3, "{tried:?}");
    for url in [&e1_url, &e2_url] {
        assert!(
            tried.iter().any(|t| t.starts_with(url.as_str())),
            "{tried:?}"
        );
    }
    let text = err.to_string();
    assert!(text.contains("no evaluator answered ("), "{text}");
}
