//! A local cluster under faults (issue 13, part 7): a directory of 4 shards built with the real
//! binary and signed by the DP, served by 8 real `pir-server serve` processes (4 shards x 2
//! replicas) and one evaluator (`--shards none --oprf-key`), all sharing one real Redis key
//! store. A `ShardedClient` looks up CPIs of every shard in a loop, checking every answer,
//! while the test injects faults and measures how long each takes to recover from:
//!
//! 1. `kill -9` of one replica: its shard's lookups fail over to the other replica, none fails;
//! 2. a Redis restart (no persistence: every registration lost) with a replica restarted
//!    meanwhile, so that one server holds the keys neither in its cache nor in the store: the
//!    client registers again there by itself, and no lookup fails;
//! 3. a whole shard down (both replicas killed): its CPIs fail with an error naming the shard,
//!    every other shard's keep answering; then both replicas come back.
//!
//! Before the faults the servers' metrics show that the keys were registered once, with the
//! evaluator, and every shard server answered with them from the shared store without a
//! RegisterKeys of its own. The report (`--nocapture`) tabulates lookups, wrong answers,
//! errors by kind and each fault's time to recover: from the fault (the restart, for a shard
//! down) to the end of the first batch in which every shard's lookups were answered rightly
//! and after which none of that phase failed. Every process is killed on every exit path.
//!
//! The evaluator is a process of its own, and the client connects to it: a `ShardedClient`
//! evaluates at one endpoint (its `--server`, or `--evaluator`) with no failover, so with the
//! OPRF key on the shard servers, killing the one connected to would fail every lookup; here
//! only PIR hosts are killed, as the faults above are about replicas and the store.

// The report is printed for `--nocapture`: what the test is for, besides its assertions.
#![allow(clippy::print_stdout)]

mod common;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::redis::Redis;
use pir_client::{ClientError, ClientOptions, ShardMap, ShardedClient};
use pir_core::{Cpi, DpKeys, TrustStore, keyword::shard_of, testing::mapping_valid};

const SHARDS: u32 = 4;
const MAPPINGS: usize = 300;
/// The longest any fault may take to recover from.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// How long the test waits for anything before giving up (and reporting what it saw).
const PATIENCE: Duration = Duration::from_secs(60);

const PHASES: [&str; 5] = [
    "steady",
    "kill -9 one replica",
    "redis restart",
    "shard down",
    "shard restarted",
];
const STEADY: usize = 0;
const REPLICA_KILLED: usize = 1;
const REDIS_RESTARTED: usize = 2;
const SHARD_DOWN: usize = 3;
const SHARD_BACK: usize = 4;

/// A free loopback port, never one handed out before: every process gets ports of its own
/// (the kernel may give a port just released to the next caller).
fn free_addr() -> SocketAddr {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut taken = TAKEN.lock().unwrap();
        if !taken.contains(&addr.port()) {
            taken.push(addr.port());
            return addr;
        }
    }
}

/// One `pir-server serve` process of the cluster, on its own ports; killed (SIGKILL) when
/// dropped, so that a failed assertion leaves nothing running.
struct Node {
    name: String,
    args: Vec<OsString>,
    dir: PathBuf,
    listen: SocketAddr,
    metrics: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new(name: &str, dir: &Path, args: Vec<OsString>) -> Self {
        Self {
            name: name.to_owned(),
            args,
            dir: dir.to_owned(),
            listen: free_addr(),
            metrics: free_addr(),
            admin: free_addr(),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts the process (on the same ports as before, after a kill), its log appended to.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pir-server"));
        cmd.arg("serve")
            .args(&self.args)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--metrics-listen")
            .arg(self.metrics.to_string())
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, _) in std::env::vars() {
            if name.starts_with("PIR_") {
                cmd.env_remove(name);
            }
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Waits until gRPC health says SERVING (the shards loaded).
    async fn ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if common::health(self.listen, "").await == Some(1) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited ({status}):\n{}", self.name, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{} never served:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `kill -9`, and reaps it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no shutdown, connections cut.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the series `series` (name and labels, as Prometheus prints them), 0 if the
    /// process has not counted it yet.
    async fn metric(&self, series: &str) -> u64 {
        let text = common::scrape_metrics(self.metrics).await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// RegisterKeys requests it handled (answered or refused).
    async fn register_requests(&self) -> u64 {
        self.metric("pir_requests_total{method=\"RegisterKeys\",outcome=\"ok\"}")
            .await
            + self
                .metric("pir_requests_total{method=\"RegisterKeys\",outcome=\"refused\"}")
                .await
    }

    async fn queries_answered(&self) -> u64 {
        self.metric("pir_requests_total{method=\"Query\",outcome=\"ok\"}")
            .await
    }

    async fn store_fetches(&self, outcome: &str) -> u64 {
        self.metric(&format!(
            "pir_key_cache_store_fetches_total{{outcome=\"{outcome}\"}}"
        ))
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one lookup of the loop came back with.
#[derive(Debug)]
enum Outcome {
    /// Found with the right MSP, or absent as it is.
    Right,
    Wrong(String),
    Failed {
        kind: String,
        text: String,
    },
}

/// One lookup of the loop.
#[derive(Debug)]
struct Lookup {
    iteration: u64,
    phase: usize,
    started: Instant,
    ended: Instant,
    shard: u32,
    outcome: Outcome,
}

/// An error's kind for the report: the variant, and for an unavailable shard which one.
fn kind(e: &ClientError) -> String {
    match e {
        ClientError::ShardUnavailable { shard, .. } => format!("ShardUnavailable(shard {shard})"),
        other => {
            let debug = format!("{other:?}");
            debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    }
}

/// The CPIs the loop asks for, by shard: present ones with their MSP, and absent ones.
struct Sample {
    present: Vec<Vec<(Cpi, String)>>,
    absent: Vec<Vec<Cpi>>,
}

fn home(cpi: &Cpi) -> u32 {
    shard_of(pir_core::testing::evaluate(cpi).output(), SHARDS)
}

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:member{i}@cluster.example")).unwrap()
}

fn msp(i: usize) -> String {
    format!("msp{}.example", i % 7)
}

impl Sample {
    fn new() -> Self {
        let mut present = vec![Vec::new(); SHARDS as usize];
        for i in (0..MAPPINGS).step_by(5) {
            let c = cpi(i);
            present[home(&c) as usize].push((c, msp(i)));
        }
        let mut absent = vec![Vec::new(); SHARDS as usize];
        for i in 0.. {
            let c = Cpi::parse(&format!("mailto:stranger{i}@cluster.example")).unwrap();
            let list = &mut absent[home(&c) as usize];
            if list.len() < 3 {
                list.push(c);
            }
            if absent.iter().all(|l| l.len() == 3) {
                break;
            }
        }
        assert!(present.iter().all(|p| !p.is_empty()), "every shard sampled");
        Self { present, absent }
    }

    /// Iteration `k`'s batch: a present CPI of every shard and an absent one of one shard.
    fn batch(&self, k: usize) -> Vec<(Cpi, u32, Option<String>)> {
        let mut batch = Vec::new();
        for (s, list) in self.present.iter().enumerate() {
            let (c, m) = &list[k % list.len()];
            batch.push((c.clone(), s as u32, Some(m.clone())));
        }
        let s = k % SHARDS as usize;
        let list = &self.absent[s];
        batch.push((
            list[(k / SHARDS as usize) % list.len()].clone(),
            s as u32,
            None,
        ));
        batch
    }
}

/// The lookups made so far, shared by the loop and the test.
type Log = Arc<Mutex<Vec<Lookup>>>;

/// Looks up a batch of every shard's CPIs, again and again, until told to stop, recording
/// every outcome under the phase in force when the batch ended.
async fn lookup_loop(
    mut client: ShardedClient,
    sample: Sample,
    log: Log,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut k = 0;
    while !stop.load(Ordering::SeqCst) {
        let batch = sample.batch(k);
        let cpis: Vec<Cpi> = batch.iter().map(|(c, _, _)| c.clone()).collect();
        let started = Instant::now();
        let outcomes = client.lookup_many(&cpis).await;
        let ended = Instant::now();
        // The phase in force once the batch is over: a fault injected while it ran is the
        // cause of what it met.
        let in_phase = phase.load(Ordering::SeqCst);
        let mut records = Vec::new();
        for ((c, shard, expected), outcome) in batch.into_iter().zip(outcomes) {
            let outcome = match (outcome, expected) {
                (Err(e), _) => Outcome::Failed {
                    kind: kind(&e),
                    text: e.to_string(),
                },
                (Ok(o), Some(m)) if o.result.cpi == c && o.result.msps() == [m.as_str()] => {
                    Outcome::Right
                }
                (Ok(o), None) if o.result.cpi == c && !o.result.found() => Outcome::Right,
                (Ok(o), expected) => Outcome::Wrong(format!(
                    "{c}: expected {expected:?}, got {:?} for {}",
                    o.result.msps(),
                    o.result.cpi
                )),
            };
            records.push(Lookup {
                iteration: k as u64,
                phase: in_phase,
                started,
                ended,
                shard,
                outcome,
            });
        }
        log.lock().unwrap().extend(records);
        k += 1;
    }
}

/// The end of the first batch started at or after `after` in which every lookup (of every
/// shard) was answered rightly.
fn whole_batch_after(log: &[Lookup], after: Instant) -> Option<Instant> {
    let mut by_iteration: BTreeMap<u64, (bool, Instant)> = BTreeMap::new();
    for l in log.iter().filter(|l| l.started >= after) {
        let entry = by_iteration.entry(l.iteration).or_insert((true, l.ended));
        entry.0 &= matches!(l.outcome, Outcome::Right);
    }
    by_iteration
        .into_values()
        .find(|(right, _)| *right)
        .map(|(_, ended)| ended)
}

/// Batches started at or after `after` and finished.
fn batches_after(log: &[Lookup], after: Instant) -> usize {
    let mut iterations: Vec<u64> = log
        .iter()
        .filter(|l| l.started >= after)
        .map(|l| l.iteration)
        .collect();
    iterations.dedup();
    iterations.len()
}

/// The figures the test prints and checks.
#[derive(Default)]
struct Report {
    /// Each fault phase's time to recover: while the test runs, until the first batch of
    /// every shard answered; then [`Report::settle`]d.
    recovery: BTreeMap<usize, Option<Duration>>,
    /// Each fault phase, when its fault was injected and from when it could recover.
    events: Vec<(usize, Instant, Instant)>,
    notes: Vec<String>,
}

impl Report {
    /// Each fault phase's time to recover, once the run is over: from the fault to the end of
    /// the first batch (started once it could recover) in which every lookup was answered
    /// rightly and after which none of the phase failed; `None` if the phase ended failing.
    fn settle(&mut self, log: &[Lookup]) {
        for &(phase, fault, from) in &self.events {
            let mut batches: BTreeMap<u64, (bool, Instant, usize)> = BTreeMap::new();
            for l in log.iter().filter(|l| l.started >= from) {
                let b = batches
                    .entry(l.iteration)
                    .or_insert((true, l.ended, l.phase));
                b.0 &= matches!(l.outcome, Outcome::Right);
            }
            let last_failed = batches
                .iter()
                .filter(|(_, (right, _, p))| *p == phase && !right)
                .map(|(k, _)| *k)
                .max();
            let settled = batches
                .iter()
                .filter(|(_, (_, _, p))| *p == phase)
                .find(|(k, (right, _, _))| *right && last_failed.is_none_or(|f| **k > f))
                .map(|(_, (_, ended, _))| *ended - fault);
            self.recovery.insert(phase, settled);
        }
    }

    fn render(&self, log: &[Lookup]) -> String {
        let mut out = String::new();
        writeln!(
            out,
            "\n| phase | lookups | answered | wrong | errors by kind | time to recover |"
        )
        .unwrap();
        writeln!(out, "|---|---:|---:|---:|---|---:|").unwrap();
        let mut totals = (0, 0, 0);
        for (p, name) in PHASES.iter().enumerate() {
            let in_phase: Vec<&Lookup> = log.iter().filter(|l| l.phase == p).collect();
            let answered = in_phase
                .iter()
                .filter(|l| !matches!(l.outcome, Outcome::Failed { .. }))
                .count();
            let wrong = in_phase
                .iter()
                .filter(|l| matches!(l.outcome, Outcome::Wrong(_)))
                .count();
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for l in &in_phase {
                if let Outcome::Failed { kind, .. } = &l.outcome {
                    *kinds.entry(kind).or_default() += 1;
                }
            }
            let kinds = if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds
                    .iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let recovery = match self.recovery.get(&p) {
                None => "-".to_owned(),
                Some(None) => format!("not within {} s", PATIENCE.as_secs()),
                Some(Some(d)) => format!("{:.2} s", d.as_secs_f64()),
            };
            writeln!(
                out,
                "| {name} | {} | {answered} | {wrong} | {kinds} | {recovery} |",
                in_phase.len()
            )
            .unwrap();
            totals.0 += in_phase.len();
            totals.1 += answered;
            totals.2 += wrong;
        }
        writeln!(
            out,
            "| all | {} | {} | {} | | |",
            totals.0, totals.1, totals.2
        )
        .unwrap();
        for note in &self.notes {
            writeln!(out, "{note}").unwrap();
        }
        out
    }
}

/// The cluster: its directory, Redis, the evaluator and the shard servers (`replicas[s][r]`).
struct Cluster {
    dir: tempfile::TempDir,
    redis: Redis,
    evaluator: Node,
    replicas: Vec<[Node; 2]>,
}

impl Cluster {
    /// Builds the directory with the binary and starts every process.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let issuer = pir_core::testing::issuer();
        std::fs::write(d.join("issuer.pub"), issuer.to_public_text()).unwrap();
        let lines: Vec<String> = (0..MAPPINGS)
            .map(|i| {
                mapping_valid(
                    &cpi(i).to_string(),
                    &msp(i),
                    None,
                    None,
                    (0, u64::MAX),
                    None,
                )
                .to_json_line()
            })
            .collect();
        std::fs::write(d.join("m.jsonl"), lines.join("\n") + "\n").unwrap();
        // The fixture OPRF key, so that the test knows each CPI's shard.
        common::write_oprf_key(&d.join(common::OPRF_KEY_FILE));
        pir_core::testing::write_secret(&d.join("admin.token"), "cluster-test-admin-token-0001");
        for args in [
            vec!["dp-keygen", "--out", "dp.key"],
            common::build_args("shards", &["--dp-key", "dp.key", "--shards", "4"]),
        ] {
            let out = common::run_in(d, &args);
            assert!(
                out.status.success(),
                "pir-server {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let redis = Redis::start().await;
        let common_args = |shards: &str| -> Vec<OsString> {
            let mut args: Vec<OsString> = [
                "--manifest",
                "shards/manifest.pirman",
                "--shards",
                shards,
                "--dp-pub",
                "dp.pub",
                "--admin-token-file",
                "admin.token",
                // The loop makes more lookups with one key than a user would: the per-key and
                // per-peer query and evaluation limits are not what this test is about. The
                // registration limits stay on (counted in Redis).
                "--key-rate",
                "off",
                "--peer-rate",
                "off",
                "--key-evaluation-rate",
                "off",
                "--peer-evaluation-rate",
                "off",
                "--global-evaluation-rate",
                "off",
                "--key-store",
            ]
            .map(OsString::from)
            .into();
            args.push(redis.url().into());
            args
        };
        let mut evaluator_args = common_args("none");
        evaluator_args.extend(["--oprf-key", common::OPRF_KEY_FILE].map(OsString::from));
        let mut evaluator = Node::new("evaluator", d, evaluator_args);
        evaluator.spawn();
        let mut replicas: Vec<[Node; 2]> = (0..SHARDS)
            .map(|s| {
                ["a", "b"]
                    .map(|r| Node::new(&format!("shard{s}{r}"), d, common_args(&s.to_string())))
            })
            .collect();
        for node in replicas.iter_mut().flatten() {
            node.spawn();
        }
        evaluator.ready().await;
        for node in replicas.iter_mut().flatten() {
            node.ready().await;
        }
        Self {
            dir,
            redis,
            evaluator,
            replicas,
        }
    }

    fn servers(&self) -> impl Iterator<Item = &Node> {
        self.replicas.iter().flatten()
    }

    /// A client of the directory through the evaluator, with both replicas of every shard.
    async fn client(&self) -> ShardedClient {
        let d = self.dir.path();
        let map: String = self
            .replicas
            .iter()
            .enumerate()
            .map(|(s, [a, b])| format!("{s} {} {}\n", a.url(), b.url()))
            .collect();
        let options = ClientOptions {
            shard_map: Some(ShardMap::parse(&map, Path::new("cluster.map")).unwrap()),
            request_timeout: Some(Duration::from_secs(10)),
            connect_timeout: Some(Duration::from_secs(2)),
            ..ClientOptions::new(TrustStore::from_file(&d.join("issuer.pub")).unwrap())
                .allowing_custom_params()
                .with_dp_keys(DpKeys::from_file(&d.join("dp.pub")).unwrap())
        };
        ShardedClient::connect(&self.evaluator.url(), options)
            .await
            .unwrap()
    }
}

/// A copy of the lookups so far (the loop only appends), without holding the lock.
fn copy(log: &Log) -> Vec<Lookup> {
    let guard = log.lock().unwrap();
    guard
        .iter()
        .map(|l| Lookup {
            outcome: match &l.outcome {
                Outcome::Right => Outcome::Right,
                Outcome::Wrong(w) => Outcome::Wrong(w.clone()),
                Outcome::Failed { kind, text } => Outcome::Failed {
                    kind: kind.clone(),
                    text: text.clone(),
                },
            },
            ..*l
        })
        .collect()
}

/// Fails the test after printing what was seen, when something never happened.
fn give_up(report: &Report, log: &Log, what: &str) -> ! {
    println!("{}", report.render(&copy(log)));
    panic!("{what} within {} s", PATIENCE.as_secs());
}

/// Polls `done` every 50 ms for at most [`PATIENCE`].
async fn within_patience<T>(mut done: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(t) = done().await {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_four_shards_by_two_replicas_recovers_from_faults() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client().await;
    let log: Log = Arc::default();
    let phase = Arc::new(AtomicUsize::new(STEADY));
    let stop = Arc::new(AtomicBool::new(false));
    let looping = tokio::spawn(lookup_loop(
        client,
        Sample::new(),
        Arc::clone(&log),
        Arc::clone(&phase),
        Arc::clone(&stop),
    ));
    let mut report = Report::default();
    let wait_batches = async |from: Instant, n: usize| {
        within_patience(async || (batches_after(&log.lock().unwrap(), from) >= n).then_some(()))
            .await
    };
    let recovered_after = async |from: Instant| {
        within_patience(async || whole_batch_after(&log.lock().unwrap(), from))
            .await
            .map(|at| at - from)
    };

    // Steady: until every shard server has answered queries.
    let started = Instant::now();
    let all_queried = within_patience(async || {
        for node in cluster.servers() {
            if node.queries_answered().await == 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
    if all_queried.is_none() || wait_batches(started, 10).await.is_none() {
        give_up(&report, &log, "every shard server answering queries");
    }
    // The keys were registered once, with the evaluator the client connected to; every shard
    // server loaded them from the shared store and received no RegisterKeys.
    let mut keys_table = String::from(
        "\n| server | RegisterKeys received | keys loaded from the store | queries answered |\n\
         |---|---:|---:|---:|\n",
    );
    let mut registrations = BTreeMap::new();
    for node in std::iter::once(&cluster.evaluator).chain(cluster.servers()) {
        let (registered, loaded, queries) = (
            node.register_requests().await,
            node.store_fetches("loaded").await,
            node.queries_answered().await,
        );
        writeln!(
            keys_table,
            "| {} | {registered} | {loaded} | {queries} |",
            node.name
        )
        .unwrap();
        registrations.insert(node.name.clone(), (registered, loaded, queries));
    }
    println!("{keys_table}");
    assert_eq!(registrations["evaluator"].0, 1, "{keys_table}");
    for node in cluster.servers() {
        let (registered, loaded, queries) = registrations[&node.name];
        assert_eq!(registered, 0, "{}: {keys_table}", node.name);
        assert!(loaded >= 1 && queries >= 1, "{}: {keys_table}", node.name);
    }

    // 1. kill -9 of one replica of shard 1: its lookups fail over to the other replica.
    let victim_shard = 1;
    phase.store(REPLICA_KILLED, Ordering::SeqCst);
    let killed = Instant::now();
    cluster.replicas[victim_shard][0].kill9();
    report
        .recovery
        .insert(REPLICA_KILLED, recovered_after(killed).await);
    report.events.push((REPLICA_KILLED, killed, killed));
    // Long enough for the round-robin to start at the dead replica several times.
    if wait_batches(killed, 10).await.is_none() {
        give_up(&report, &log, "10 batches with a replica dead");
    }
    let victim = &mut cluster.replicas[victim_shard][0];
    victim.spawn();
    victim.ready().await;
    let victim = &cluster.replicas[victim_shard][0];
    if within_patience(async || (victim.queries_answered().await > 0).then_some(()))
        .await
        .is_none()
    {
        give_up(&report, &log, "the restarted replica taking queries again");
    }
    // Back with keys from the store, not registered again.
    let (registered, loaded) = (
        victim.register_requests().await,
        victim.store_fetches("loaded").await,
    );
    report.notes.push(format!(
        "{} restarted: RegisterKeys received {registered}, keys loaded from the store {loaded}",
        victim.name
    ));
    let victim_figures = (registered, loaded);

    // 2. Redis restarts empty, and a replica of shard 2 restarts meanwhile: it holds the keys
    // neither in its cache nor in the store, and the client registers there again by itself.
    // (The other servers hold the keys in their caches, which a store outage leaves alone.)
    phase.store(REDIS_RESTARTED, Ordering::SeqCst);
    let redis_restarted = Instant::now();
    cluster.redis.restart().await;
    let restarted = &mut cluster.replicas[2][1];
    restarted.kill9();
    restarted.spawn();
    restarted.ready().await;
    let restarted = &cluster.replicas[2][1];
    let healed = within_patience(async || {
        (restarted.queries_answered().await > 0).then_some(Instant::now())
    })
    .await;
    let Some(healed) = healed else {
        give_up(
            &report,
            &log,
            "the replica restarted after Redis taking queries",
        );
    };
    let recovered = within_patience(async || whole_batch_after(&log.lock().unwrap(), healed)).await;
    report
        .recovery
        .insert(REDIS_RESTARTED, recovered.map(|at| at - redis_restarted));
    report
        .events
        .push((REDIS_RESTARTED, redis_restarted, healed));
    let (registered, absent) = (
        restarted.register_requests().await,
        restarted.store_fetches("absent").await,
    );
    report.notes.push(format!(
        "{} restarted after Redis: RegisterKeys received {registered} (the client healing), \
         keys absent from the store {absent}",
        restarted.name
    ));
    assert!(
        registered >= 1 && absent >= 1,
        "{}",
        report.render(&copy(&log))
    );

    // 3. A whole shard down: both replicas of shard 3 killed.
    let down_shard = 3u32;
    phase.store(SHARD_DOWN, Ordering::SeqCst);
    let down = Instant::now();
    for node in &mut cluster.replicas[down_shard as usize] {
        node.kill9();
    }
    if wait_batches(down, 6).await.is_none() {
        give_up(&report, &log, "6 batches with shard 3 down");
    }
    phase.store(SHARD_BACK, Ordering::SeqCst);
    let back = Instant::now();
    for node in &mut cluster.replicas[down_shard as usize] {
        node.spawn();
    }
    for node in &mut cluster.replicas[down_shard as usize] {
        node.ready().await;
    }
    report
        .recovery
        .insert(SHARD_BACK, recovered_after(back).await);
    report.events.push((SHARD_BACK, back, back));
    // Both replicas taking queries again, with the keys the client registered again in phase
    // 2 back in the store.
    for node in &cluster.replicas[down_shard as usize] {
        if within_patience(async || (node.queries_answered().await > 0).then_some(()))
            .await
            .is_none()
        {
            give_up(
                &report,
                &log,
                "both replicas of shard 3 taking queries again",
            );
        }
    }
    let mut shard_back_registrations = 0;
    for node in &cluster.replicas[down_shard as usize] {
        shard_back_registrations += node.register_requests().await;
    }
    report.notes.push(format!(
        "shard 3 restarted: RegisterKeys received by its replicas {shard_back_registrations}"
    ));

    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(PATIENCE, looping)
        .await
        .expect("the loop stops")
        .unwrap();
    let log = copy(&log);
    report.settle(&log);
    let rendered = report.render(&log);
    println!("{rendered}");

    let wrong: Vec<&String> = log
        .iter()
        .filter_map(|l| match &l.outcome {
            Outcome::Wrong(w) => Some(w),
            _ => None,
        })
        .collect();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}{rendered}");
    for p in [REPLICA_KILLED, REDIS_RESTARTED, SHARD_BACK] {
        let took = report.recovery[&p];
        assert!(
            took.is_some_and(|t| t <= RECOVERY_BOUND),
            "{}: recovery {took:?}{rendered}",
            PHASES[p]
        );
    }
    let failed = |p: usize, shard: Option<u32>| -> Vec<&Lookup> {
        log.iter()
            .filter(|l| l.phase == p && shard.is_none_or(|s| l.shard == s))
            .filter(|l| matches!(l.outcome, Outcome::Failed { .. }))
            .collect()
    };
    // Failover: no lookup of the shard that lost a replica failed (nor any other shard's).
    assert!(
        failed(REPLICA_KILLED, None).is_empty(),
        "{:?}{rendered}",
        failed(REPLICA_KILLED, None)
    );
    // Healing after Redis lost every key: nothing for the user to do, no lookup failed.
    assert!(
        failed(REDIS_RESTARTED, None).is_empty(),
        "{:?}{rendered}",
        failed(REDIS_RESTARTED, None)
    );
    // Shard down: its lookups failed, naming it; every other shard's answered.
    let down_failures = failed(SHARD_DOWN, None);
    assert!(
        !down_failures.is_empty(),
        "the shard's lookups failed{rendered}"
    );
    for l in down_failures {
        let Outcome::Failed { kind, text } = &l.outcome else {
            unreachable!()
        };
        assert_eq!(l.shard, down_shard, "{text}{rendered}");
        assert_eq!(kind, "ShardUnavailable(shard 3)", "{text}");
        assert!(text.starts_with("shard 3: no replica answered ("), "{text}");
    }
    // Once back, nothing but shard 3 failed while it came up.
    assert!(
        failed(SHARD_BACK, None)
            .iter()
            .all(|l| l.shard == down_shard),
        "{rendered}"
    );
    // The killed replica came back to the keys in the store.
    assert!(
        victim_figures.0 == 0 && victim_figures.1 >= 1,
        "{victim_figures:?}{rendered}"
    );
    // Registered again in phase 2, the keys were in the store for the restarted shard.
    assert_eq!(shard_back_registrations, 0, "{rendered}");
}
