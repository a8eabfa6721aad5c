//! Cross-request batching: concurrent requests share passes over the database, each still gets
//! its own answers, a faulty request fails alone, and the bounded queue and deadlines hold.
//!
//! To make batching deterministic, a "blocker" request of many queries keeps the answering
//! thread busy while the requests under test queue up behind it.

mod common;

use std::time::Duration;

use pir_core::testing::issuer;
use pir_core::{Cpi, LookupClient, MappingFields, PendingLookup, Snapshot};
use pir_proto::v1::{QueryRequest, QueryResponse, discovery_client::DiscoveryClient};
use pir_server::{RunningServer, ServeOptions};
use tonic::{Code, Status, transport::Channel};

use common::connect;

const NOW: u64 = 1_800_000_000;
const BLOCKER_QUERIES: usize = 24;

/// `mailto:userI@example.org` is at `mspI.example`, for I in 0..6; 6.. are absent.
fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:user{i}@example.org")).unwrap()
}

fn msp(i: usize) -> Vec<String> {
    if i < 6 {
        vec![format!("msp{i}.example")]
    } else {
        vec![]
    }
}

fn snapshot() -> Snapshot {
    let mappings = (0..6)
        .map(|i| {
            MappingFields::new(cpi(i), &msp(i)[0], None, None, 0, u64::MAX)
                .unwrap()
                .sign(&issuer(), None)
                .unwrap()
        })
        .collect();
    common::small_snapshot(mappings, 1, 3)
}

async fn start(opts: ServeOptions) -> RunningServer {
    common::start_on(snapshot(), opts).await
}

/// A client with its own registered keys, on its own connection.
struct User {
    rpc: DiscoveryClient<Channel>,
    client: LookupClient,
}

impl User {
    async fn new(server: &RunningServer) -> Self {
        let mut rpc = connect(server).await;
        let (client, _) = common::register(&mut rpc).await;
        Self { rpc, client }
    }

    /// A query for `cpi(i)`, its OPRF step done in process (batching is about queries).
    fn pending(&self, i: usize) -> PendingLookup {
        self.client
            .query(&pir_core::testing::evaluate(&cpi(i)))
            .unwrap()
    }

    fn request(&self, queries: Vec<Vec<u8>>) -> QueryRequest {
        QueryRequest::authenticated(self.client.keys().unwrap(), 1, queries)
    }

    /// Sends `queries` on a task of its own.
    fn send(
        &self,
        queries: Vec<Vec<u8>>,
    ) -> tokio::task::JoinHandle<Result<QueryResponse, Status>> {
        let mut rpc = self.rpc.clone();
        let request = self.request(queries);
        tokio::spawn(async move { rpc.query(request).await.map(|r| r.into_inner()) })
    }

    fn msps(&self, pending: PendingLookup, answer: &[u8]) -> Vec<String> {
        let result = self.client.decode(pending, answer, NOW).unwrap();
        result.msps().into_iter().map(String::from).collect()
    }
}

/// A value of the server's metrics text, 0 when absent.
fn metric(server: &RunningServer, name: &str) -> f64 {
    let text = server.service().metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `pir_answers_in_progress` is `n` (queries queued or being answered).
async fn wait_in_progress(server: &RunningServer, n: f64) {
    for _ in 0..6000 {
        if metric(server, "pir_answers_in_progress") == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "in progress never reached {n}:\n{}",
        server.service().metrics_text()
    );
}

/// Starts a request of many queries that keeps the answering thread busy for a while; returns
/// once the worker has it.
async fn blocker(
    server: &RunningServer,
    user: &User,
) -> tokio::task::JoinHandle<Result<QueryResponse, Status>> {
    let before = metric(server, "pir_answers_in_progress");
    let handle = user.send(vec![user.pending(0).query().to_vec(); BLOCKER_QUERIES]);
    wait_in_progress(server, before + BLOCKER_QUERIES as f64).await;
    // The worker takes a job the moment it is queued; a little slack for the thread to wake.
    tokio::time::sleep(Duration::from_millis(20)).await;
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_pass_and_each_gets_its_own_answers() {
    let server = start(ServeOptions::default()).await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(User::new(&server).await);
    }
    let busy = blocker(&server, &users[0]).await;

    // Eight one-query requests from four clients (different keys), queued behind the blocker:
    // they fit one batch of the default eight queries.
    let mut sent = Vec::new();
    for i in 0..8 {
        let user = &users[i % 4];
        let pending = user.pending(i);
        let handle = user.send(vec![pending.query().to_vec()]);
        sent.push((i, pending, handle));
    }
    for (i, pending, handle) in sent {
        let response = handle.await.unwrap().unwrap();
        assert_eq!(response.answers.len(), 1);
        assert_eq!(
            users[i % 4].msps(pending, &response.answers[0]),
            msp(i),
            "{i}"
        );
    }
    let response = busy.await.unwrap().unwrap();
    assert_eq!(response.answers.len(), BLOCKER_QUERIES);
    // Answered in passes of at most eight queries: answers from the first and last pass.
    for k in [5, BLOCKER_QUERIES - 1] {
        assert_eq!(
            users[0].msps(users[0].pending(0), &response.answers[k]),
            msp(0)
        );
    }

    let batches = metric(&server, "pir_batch_queries_count");
    let queries = metric(&server, "pir_batch_queries_sum");
    let within_cap = metric(&server, "pir_batch_queries_bucket{le=\"8\"}");
    assert_eq!(queries, (BLOCKER_QUERIES + 8) as f64);
    // Nine requests, fewer passes: at least one pass answered several requests.
    assert!(
        batches < 9.0,
        "no batch was shared:\n{}",
        server.service().metrics_text()
    );
    // Only the blocker, alone, went over the cap.
    assert_eq!(within_cap, batches - 1.0);
    assert_eq!(metric(&server, "pir_lookups_total"), queries);
    assert_eq!(metric(&server, "pir_answers_in_progress"), 0.0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_request_fails_alone_in_a_shared_batch() {
    let marker = b"\xde\xad\xbe\xef".to_vec();
    let server = common::start_panicking_on(snapshot(), &marker).await;
    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(User::new(&server).await);
    }
    let busy = blocker(&server, &users[0]).await;

    // One batch's worth queued behind the blocker: good requests around a malformed one (the
    // scheme refuses the whole batch) and a poisoned one (answering panics).
    let good = |i: usize| {
        let user = &users[i % 3];
        let pending = user.pending(i);
        (i, user.send(vec![pending.query().to_vec()]), pending)
    };
    let first = [good(1), good(2)];
    let malformed = users[1].send(vec![vec![1u8; 10]]);
    let middle = good(3);
    let mut poisoned_query = users[2].pending(4).query().to_vec();
    poisoned_query[..4].copy_from_slice(&marker);
    let poisoned = users[2].send(vec![poisoned_query]);
    let last = good(7);

    let err = malformed.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = poisoned.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    for (i, handle, pending) in first.into_iter().chain([middle, last]) {
        let response = handle.await.unwrap().unwrap();
        assert_eq!(users[i % 3].msps(pending, &response.answers[0]), msp(i));
    }
    busy.await.unwrap().unwrap();
    assert!(
        metric(&server, "pir_batch_splits_total") >= 1.0,
        "the faulty requests were never in a shared batch:\n{}",
        server.service().metrics_text()
    );
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"internal\"}"),
        1.0
    );

    // The answering thread carries on.
    let mut user = users.remove(0);
    let pending = user.pending(5);
    let request = user.request(vec![pending.query().to_vec()]);
    let response = user.rpc.query(request).await.unwrap().into_inner();
    assert_eq!(user.msps(pending, &response.answers[0]), msp(5));
    assert_eq!(metric(&server, "pir_answers_in_progress"), 0.0);
    server.stop().await.unwrap();
}

/// Issue 15, item 11: a query that answering would refuse (the right length, a word above the
/// modulus) is refused at the door, so the honest requests queued beside it share their pass
/// as if it had never been sent: no batch is split, none fails. (Before the door check, the
/// malformed query joined the batch, failed it, and the batch was answered again in halves.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_query_never_reaches_a_batch_of_honest_ones() {
    let server = start(ServeOptions::default()).await;
    let users = [
        User::new(&server).await,
        User::new(&server).await,
        User::new(&server).await,
    ];
    let busy = blocker(&server, &users[2]).await;
    // One batch's worth queued behind the blocker, the malformed request among them.
    let honest = |i: usize| {
        let user = &users[i % 2];
        let pending = user.pending(i);
        (i, user.send(vec![pending.query().to_vec()]), pending)
    };
    let mut unreduced = users[1].pending(9).query().to_vec();
    let n = unreduced.len();
    unreduced[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
    let sent = [honest(1), honest(2), honest(3)];
    let malformed = users[1].send(vec![unreduced]);
    let later = [honest(4), honest(5), honest(6)];
    let err = malformed.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("query"), "{}", err.message());
    for (i, handle, pending) in sent.into_iter().chain(later) {
        let response = handle.await.unwrap().unwrap();
        assert_eq!(users[i % 2].msps(pending, &response.answers[0]), msp(i));
    }
    busy.await.unwrap().unwrap();
    assert_eq!(metric(&server, "pir_batch_splits_total"), 0.0);
    assert_eq!(
        metric(&server, "pir_lookups_total"),
        (BLOCKER_QUERIES + 6) as f64
    );
    // The six honest requests shared passes: fewer than one each.
    assert!(metric(&server, "pir_batch_queries_count") < 7.0);
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(metric(&server, "pir_answers_in_progress"), 0.0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_hold_slots_and_expire_without_a_pass() {
    // Slots for the blocker's queries and one more: one queued request of one query; a third
    // request is refused at once.
    let server = start(ServeOptions {
        max_pending_answers: BLOCKER_QUERIES + 1,
        ..ServeOptions::default()
    })
    .await;
    let user = User::new(&server).await;
    let busy = blocker(&server, &user).await;
    let pending = user.pending(2);
    let queued = user.send(vec![pending.query().to_vec()]);
    wait_in_progress(&server, (BLOCKER_QUERIES + 1) as f64).await;
    let err = user.send(vec![pending.query().to_vec()]).await.unwrap();
    assert_eq!(err.unwrap_err().code(), Code::ResourceExhausted);
    let response = queued.await.unwrap().unwrap();
    assert_eq!(user.msps(pending, &response.answers[0]), msp(2));
    busy.await.unwrap().unwrap();
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"overloaded\"}"),
        1.0
    );
    server.stop().await.unwrap();

    // A request still queued when its deadline passes is refused without being answered.
    let timeout = Duration::from_millis(150);
    let server = start(ServeOptions {
        request_timeout: timeout,
        ..ServeOptions::default()
    })
    .await;
    let user = User::new(&server).await;
    let started = std::time::Instant::now();
    let busy = blocker(&server, &user).await;
    let queued = user.send(vec![user.pending(2).query().to_vec()]);
    let err = queued.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let err = busy.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    // The blocker's slot is held until its pass ends; then the expired job is dropped.
    wait_in_progress(&server, 0.0).await;
    let blocker_took = started.elapsed();
    assert!(
        blocker_took > timeout,
        "the blocker ({blocker_took:?}) must outlast the timeout for this test to mean anything"
    );
    assert_eq!(metric(&server, "pir_batch_queries_count"), 1.0);
    assert_eq!(
        metric(&server, "pir_batch_queries_sum"),
        BLOCKER_QUERIES as f64
    );
    server.stop().await.unwrap();
}
