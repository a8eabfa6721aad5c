//! The answering worker: one thread answers the queued `Query` requests, several at a time.
//!
//! ```text
//! Query ─checks─▶ slots? ── too few free: RESOURCE_EXHAUSTED (max_pending_answers queries queued
//!                  │                     or answering; no token of the request's is spent)
//!                  ▼
//!               rate limits (tokens) ── over: RESOURCE_EXHAUSTED, the slots given back
//!                  │
//!                  ▼
//!               queue ─▶ worker: the oldest job, plus queued jobs on the same snapshot while the
//!                  ▲             queries fit in max_batch_queries ─▶ one answer_batch (rayon)
//!                  │                                                         │
//!  answers ◀───────┴──────── split back per request (oneshot) ◀─────────────┘
//! ```
//!
//! Answering k queries in one pass over the database reads each row once for all of them, and
//! answering one batch at a time bounds the working memory (about 20 MiB a query at 1M mappings)
//! to one batch, whatever the number of concurrent requests. The batch itself uses every core
//! through rayon's global pool.
//!
//! The slots count queries, not requests: a request of 32 queries holds 32 of them (or all of
//! them, if there are fewer), so the queue's depth is bounded in work, not in request count.
//!
//! Every query's bytes are checked at the door (`service.rs`), so a malformed query never gets
//! here. A batch that fails anyway (a bug, a panic in a dependency) is halved and each half
//! answered again, down to single requests, so only the faulty request gets its error.

use std::{
    collections::VecDeque,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use pir_core::{Engine, EvalKeys, Snapshot};
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

#[cfg(feature = "test-hooks")]
use crate::options::TestHooks;
use crate::{error::ServerError, metrics::Metrics, options::ServeOptions};

/// What a request gets back: its answers, in the order of its queries.
type Reply = Result<Vec<Vec<u8>>, ServerError>;

/// One request's places among the `max_pending_answers`: one per query. They are released just
/// before the reply is sent, so a client that has its answer may send its next request at once.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    queries: i64,
    in_progress: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_progress.sub(self.queries);
    }
}

/// A request waiting for the worker.
struct Job {
    /// The snapshot the request was checked against (its epoch and key parameters).
    snapshot: Arc<Snapshot>,
    /// The client's keys (Spiral); `None` for an engine whose queries carry their own.
    keys: Option<Arc<EvalKeys>>,
    queries: Vec<Vec<u8>>,
    /// `None` when the timeout is too long to represent: never expires.
    deadline: Option<Instant>,
    reply: oneshot::Sender<Reply>,
    slot: Slot,
}

impl Job {
    fn finish(self, reply: Reply) {
        let Job {
            reply: sender,
            slot,
            ..
        } = self;
        drop(slot);
        // The client may have gone (cancelled, or timed out): there is nobody to tell.
        let _ = sender.send(reply);
    }
}

/// The request side of the worker: admission, the queue, and waiting for the reply.
pub(crate) struct Answerer {
    queue: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
    max_pending: usize,
    request_timeout: Duration,
    in_progress: IntGauge,
    answer_seconds: Histogram,
    /// The worker thread (`None` until started).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Answerer {
    /// Starts the worker thread. It stops by itself once the `Answerer` is dropped and the
    /// queued jobs are answered.
    pub(crate) fn start(opts: &ServeOptions, metrics: &Metrics) -> Result<Self, ServerError> {
        let (answerer, worker, jobs) = Self::unstarted(opts, metrics);
        answerer.spawn(worker, jobs, Worker::run)
    }

    /// [`Answerer::start`], with faults injected as `hooks` say.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn start_with_hooks(
        opts: &ServeOptions,
        metrics: &Metrics,
        hooks: &TestHooks,
    ) -> Result<Self, ServerError> {
        let (answerer, mut worker, jobs) = Self::unstarted(opts, metrics);
        worker.panic_marker = hooks.danger_panic_marker.clone();
        answerer.spawn(worker, jobs, Worker::run)
    }

    /// Starts `run` as the worker thread (tests substitute a failing worker).
    fn spawn(
        mut self,
        worker: Worker,
        jobs: mpsc::Receiver<Job>,
        run: fn(Worker, mpsc::Receiver<Job>),
    ) -> Result<Self, ServerError> {
        let thread = std::thread::Builder::new()
            .name("pir-answerer".into())
            .spawn(move || run(worker, jobs))
            .map_err(|e| ServerError::io("starting the answering thread", e))?;
        self.thread = Some(thread);
        Ok(self)
    }

    /// Whether the worker thread is running. It only stops early if it panicked outside the
    /// contained answering (a bug): every Query then fails, and health says so.
    pub(crate) fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Both sides, the worker not yet running (tests drive it by hand).
    fn unstarted(opts: &ServeOptions, metrics: &Metrics) -> (Self, Worker, mpsc::Receiver<Job>) {
        let (queue, jobs) = mpsc::channel();
        let worker = Worker {
            max_batch_queries: opts.max_batch_queries.max(1),
            request_timeout: opts.request_timeout,
            #[cfg(feature = "test-hooks")]
            panic_marker: None,
            batch_queries: metrics.batch_queries.clone(),
            batch_splits: metrics.batch_splits.clone(),
        };
        let answerer = Self {
            queue,
            slots: Arc::new(Semaphore::new(opts.max_pending_answers)),
            max_pending: opts.max_pending_answers,
            request_timeout: opts.request_timeout,
            in_progress: metrics.in_progress.clone(),
            answer_seconds: metrics.answer_seconds.clone(),
            thread: None,
        };
        (answerer, worker, jobs)
    }

    /// Places for a request of `queries` queries (all of them, for a request larger than the
    /// whole queue), or RESOURCE_EXHAUSTED at once when too few are free. Taken before the
    /// request's rate-limit tokens, so that a refused request costs its user nothing.
    pub(crate) fn reserve(&self, queries: usize) -> Result<Slot, ServerError> {
        let n = queries.clamp(1, self.max_pending.max(1));
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.slots.clone().try_acquire_many_owned(n).ok())
            .ok_or(ServerError::Overloaded(self.max_pending))?;
        let queries = i64::try_from(n).unwrap_or(i64::MAX);
        self.in_progress.add(queries);
        Ok(Slot {
            _permit: permit,
            queries,
            in_progress: self.in_progress.clone(),
        })
    }

    /// Answers `queries` over `snapshot` in the places of `slot`, batched with other requests.
    pub(crate) async fn answer(
        &self,
        slot: Slot,
        snapshot: Arc<Snapshot>,
        keys: Option<Arc<EvalKeys>>,
        queries: Vec<Vec<u8>>,
    ) -> Reply {
        // The slot moves into the job: it is held until the worker is done with the job, even
        // if the request times out or the client goes away first.
        let timer = self.answer_seconds.start_timer();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            snapshot,
            keys,
            queries,
            deadline: Instant::now().checked_add(self.request_timeout),
            reply,
            slot,
        };
        self.queue.send(job).map_err(|_| worker_gone())?;
        let answers = tokio::time::timeout(self.request_timeout, answer)
            .await
            .map_err(|_| ServerError::DeadlineExceeded(self.request_timeout))?
            // The job was dropped unanswered: only if the worker died.
            .map_err(|_| worker_gone())??;
        timer.observe_duration();
        Ok(answers)
    }
}

fn worker_gone() -> ServerError {
    ServerError::Internal("the answering thread has stopped".into())
}

/// The worker thread's side.
struct Worker {
    max_batch_queries: usize,
    request_timeout: Duration,
    /// Test hook: a query starting with this panics while answered.
    #[cfg(feature = "test-hooks")]
    panic_marker: Option<Vec<u8>>,
    batch_queries: Histogram,
    batch_splits: IntCounter,
}

/// Logs the worker's death. Jobs it held are dropped with it, so their requests get INTERNAL
/// and later requests are refused at once (`send` fails): nothing waits forever.
struct DeathNotice;

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the answering thread panicked; queries will fail until a restart");
        }
    }
}

impl Worker {
    fn run(self, jobs: mpsc::Receiver<Job>) {
        let _notice = DeathNotice;
        let mut waiting = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match jobs.recv() {
                    Ok(job) => waiting.push_back(job),
                    // Every sender is gone: the service was dropped and nothing is queued.
                    Err(mpsc::RecvError) => break,
                }
            }
            waiting.extend(jobs.try_iter());
            let group = self.take_group(&mut waiting);
            if !group.is_empty() {
                self.answer_group(group);
            }
        }
        tracing::debug!("answering thread stopped");
    }

    /// Takes the oldest job and the queued jobs on the same snapshot that fit beside it, in
    /// queue order. The oldest job always goes, so none waits for ever; one with more queries
    /// than a batch holds goes alone (and is answered in several passes).
    fn take_group(&self, waiting: &mut VecDeque<Job>) -> Vec<Job> {
        let now = Instant::now();
        let mut group: Vec<Job> = Vec::new();
        let mut queries = 0;
        let mut rest = VecDeque::with_capacity(waiting.len());
        for job in waiting.drain(..) {
            let Some(job) = self.live(job, now) else {
                continue;
            };
            let fits = group.first().is_none_or(|first| {
                Arc::ptr_eq(&first.snapshot, &job.snapshot)
                    && queries + job.queries.len() <= self.max_batch_queries
            });
            if fits {
                queries += job.queries.len();
                group.push(job);
            } else {
                rest.push_back(job);
            }
        }
        *waiting = rest;
        group
    }

    /// The job, unless its client has gone (dropped) or its deadline has passed (answered
    /// DEADLINE_EXCEEDED): neither is worth a pass over the database.
    fn live(&self, job: Job, now: Instant) -> Option<Job> {
        if job.reply.is_closed() {
            return None;
        }
        if job.deadline.is_some_and(|d| d <= now) {
            job.finish(Err(ServerError::DeadlineExceeded(self.request_timeout)));
            return None;
        }
        Some(job)
    }

    /// Answers a group of jobs on one snapshot; on failure, each half again.
    fn answer_group(&self, group: Vec<Job>) {
        let now = Instant::now();
        let mut group: Vec<Job> = group
            .into_iter()
            .filter_map(|job| self.live(job, now))
            .collect();
        if group.is_empty() {
            return;
        }
        match self.answer_batch(&group) {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in group {
                    let own = answers.by_ref().take(job.queries.len()).collect();
                    job.finish(Ok(own));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(job) = group.pop() {
                    job.finish(Err(e));
                }
            }
            Err(e) => {
                self.batch_splits.inc();
                // Each faulty request is also logged where it is refused.
                tracing::debug!(
                    requests = group.len(),
                    error = %e,
                    "a batch failed; answering its requests apart to find the faulty ones"
                );
                let second = group.split_off(group.len() / 2);
                self.answer_group(group);
                self.answer_group(second);
            }
        }
    }

    /// Test hook: panics, as a dependency bug would, if a query starts with the panic marker.
    #[cfg(feature = "test-hooks")]
    fn injected_faults(&self, queries: &[&[u8]]) {
        if let Some(marker) = &self.panic_marker
            && queries.iter().any(|q| q.starts_with(marker))
        {
            panic!("injected fault: a dependency bug while answering");
        }
    }

    /// Without the `test-hooks` feature there is nothing to inject.
    #[cfg(not(feature = "test-hooks"))]
    fn injected_faults(&self, _queries: &[&[u8]]) {}

    /// One pass over the database for every query of `group` (non-empty, one snapshot), or
    /// several of at most `max_batch_queries` queries each, with any panic inside contained.
    fn answer_batch(&self, group: &[Job]) -> Reply {
        let snapshot = &group[0].snapshot;
        let queries: Vec<&[u8]> = group
            .iter()
            .flat_map(|job| job.queries.iter().map(Vec::as_slice))
            .collect();
        let started = Instant::now();
        // Unwind safety: answering only reads the snapshot and the keys, so a panic part-way
        // leaves nothing half-updated that later batches could see.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.injected_faults(&queries);
            // A request with more queries than a batch holds (a group is then that request
            // alone) goes through in passes of at most max_batch_queries, which bounds the
            // working memory (about 20 MiB a query at 1M mappings) whatever the request size.
            let mut answers = Vec::with_capacity(queries.len());
            match snapshot.engine() {
                Engine::Spiral => {
                    let batch = group
                        .iter()
                        .flat_map(|job| job.queries.iter().map(move |q| (&job.keys, q.as_slice())))
                        .map(|(keys, q)| match keys {
                            Some(keys) => Ok((&**keys, q)),
                            None => {
                                Err(pir_core::CoreError::Internal("a Spiral query without keys"))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    for chunk in batch.chunks(self.max_batch_queries) {
                        answers.extend(snapshot.database()?.answer_batch(chunk)?);
                    }
                }
                Engine::YpirSp => {
                    let database = snapshot.ypir_database()?;
                    for chunk in queries.chunks(self.max_batch_queries) {
                        answers.extend(database.answer_batch(chunk)?);
                    }
                }
            }
            Ok::<_, pir_core::CoreError>(answers)
        }));
        let answers = match outcome {
            Ok(Ok(answers)) if answers.len() == queries.len() => answers,
            Ok(Ok(answers)) => {
                return Err(ServerError::Internal(format!(
                    "{} answers for {} queries",
                    answers.len(),
                    queries.len()
                )));
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(ServerError::Internal("answering panicked".into())),
        };
        self.batch_queries.observe(queries.len() as f64);
        tracing::debug!(
            requests = group.len(),
            queries = queries.len(),
            millis = started.elapsed().as_secs_f64() * 1e3,
            "batch answered"
        );
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{BuildOptions, ClientKeys, IssuerKey, SchemeParams, TrustStore};

    use super::*;

    fn snapshot() -> Arc<Snapshot> {
        let trust = TrustStore::parse(&IssuerKey::from_seed(&[5; 32]).to_public_text()).unwrap();
        let opts = BuildOptions {
            epoch: 1,
            now: 1_800_000_000,
            salt: Some([5; 32]),
            scheme: Some(SchemeParams::danger_test_only_small().into()),
            engine: pir_core::Engine::Spiral,
            fill_percent: None,
        };
        let oprf = pir_core::testing::oprf_key();
        Arc::new(Snapshot::build(Vec::new(), &trust, &oprf, &opts).unwrap().0)
    }

    fn keys() -> Arc<EvalKeys> {
        let scheme = SchemeParams::danger_test_only_small();
        let client = ClientKeys::generate(&scheme).unwrap();
        Arc::new(EvalKeys::parse(&scheme, client.public_bytes()).unwrap())
    }

    struct Fixture {
        answerer: Answerer,
        worker: Worker,
        jobs: mpsc::Receiver<Job>,
        metrics: Metrics,
    }

    fn fixture(opts: ServeOptions) -> Fixture {
        let metrics = Metrics::new().unwrap();
        let (answerer, worker, jobs) = Answerer::unstarted(&opts, &metrics);
        Fixture {
            answerer,
            worker,
            jobs,
            metrics,
        }
    }

    /// A job of `n` (unanswerable) queries, queued as the request side queues it.
    fn job(
        answerer: &Answerer,
        snapshot: &Arc<Snapshot>,
        keys: &Arc<EvalKeys>,
        n: usize,
    ) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            snapshot: snapshot.clone(),
            keys: Some(keys.clone()),
            queries: vec![vec![n as u8]; n],
            deadline: None,
            reply,
            slot: answerer.reserve(1).unwrap(),
        };
        (job, answer)
    }

    #[test]
    fn a_group_is_the_oldest_job_and_what_fits_beside_it_on_its_snapshot() {
        let f = fixture(ServeOptions::default());
        let (a, b) = (snapshot(), snapshot());
        let keys = keys();
        let mut waiting = VecDeque::new();
        let mut answers = Vec::new();
        // (snapshot, queries): the cap is 8.
        for (snapshot, n) in [(&a, 3), (&a, 4), (&a, 2), (&b, 1), (&a, 1), (&a, 1)] {
            let (job, answer) = job(&f.answerer, snapshot, &keys, n);
            waiting.push_back(job);
            answers.push(answer);
        }
        // One expired job and one whose client has gone: neither is answered by a pass.
        let (mut expired, mut expired_answer) = job(&f.answerer, &a, &keys, 1);
        expired.deadline = Some(Instant::now());
        waiting.insert(1, expired);
        let (gone, gone_answer) = job(&f.answerer, &a, &keys, 1);
        drop(gone_answer);
        waiting.insert(2, gone);
        assert_eq!(f.metrics.in_progress.get(), 8);

        let sizes = |jobs: &mut dyn Iterator<Item = &Job>| -> Vec<(bool, usize)> {
            jobs.map(|j| (Arc::ptr_eq(&j.snapshot, &a), j.queries.len()))
                .collect()
        };
        let group = f.worker.take_group(&mut waiting);
        assert_eq!(sizes(&mut group.iter()), [(true, 3), (true, 4), (true, 1)]);
        assert_eq!(
            sizes(&mut waiting.iter()),
            [(true, 2), (false, 1), (true, 1)]
        );
        assert!(matches!(
            expired_answer.try_recv(),
            Ok(Err(ServerError::DeadlineExceeded(_)))
        ));
        // The two dropped jobs gave their slots back.
        assert_eq!(f.metrics.in_progress.get(), 6);

        // Next: the oldest left (2) and the one behind the other snapshot's job (1).
        drop(group);
        let group = f.worker.take_group(&mut waiting);
        assert_eq!(sizes(&mut group.iter()), [(true, 2), (true, 1)]);
        let group = f.worker.take_group(&mut waiting);
        assert_eq!(sizes(&mut group.iter()), [(false, 1)]);
        assert!(waiting.is_empty());
        drop(f.jobs);
    }

    #[test]
    fn slots_count_queries_and_a_request_larger_than_the_queue_takes_it_all() {
        let f = fixture(ServeOptions {
            max_pending_answers: 10,
            ..ServeOptions::default()
        });
        let six = f.answerer.reserve(6).unwrap();
        assert_eq!(f.metrics.in_progress.get(), 6);
        let four = f.answerer.reserve(4).unwrap();
        assert!(matches!(
            f.answerer.reserve(1),
            Err(ServerError::Overloaded(10))
        ));
        drop(four);
        assert!(matches!(
            f.answerer.reserve(5),
            Err(ServerError::Overloaded(10))
        ));
        drop(six);
        let all = f.answerer.reserve(32).unwrap();
        assert_eq!(f.metrics.in_progress.get(), 10);
        drop(all);
        assert_eq!(f.metrics.in_progress.get(), 0);
        assert_eq!(f.answerer.slots.available_permits(), 10);
    }

    #[test]
    fn a_job_larger_than_a_batch_goes_alone() {
        let f = fixture(ServeOptions {
            max_batch_queries: 4,
            ..ServeOptions::default()
        });
        let (a, keys) = (snapshot(), keys());
        let (big, _big_answer) = job(&f.answerer, &a, &keys, 9);
        let (small, _small_answer) = job(&f.answerer, &a, &keys, 1);
        let mut waiting = VecDeque::from([big, small]);
        let group = f.worker.take_group(&mut waiting);
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].queries.len(), 9);
        assert_eq!(waiting.len(), 1);
    }

    #[test]
    fn the_worker_answers_what_is_queued_then_stops_once_the_service_is_gone() {
        let f = fixture(ServeOptions::default());
        let (a, keys) = (snapshot(), keys());
        // One byte is no query: the pass refuses it before any work.
        let (job, mut answer) = job(&f.answerer, &a, &keys, 1);
        f.answerer.queue.send(job).unwrap();
        drop(f.answerer);
        let worker = f.worker;
        let jobs = f.jobs;
        std::thread::spawn(move || worker.run(jobs)).join().unwrap();
        assert!(matches!(answer.try_recv(), Ok(Err(ServerError::Core(_)))));
        assert_eq!(f.metrics.in_progress.get(), 0);
    }

    #[tokio::test]
    async fn requests_get_an_error_not_a_hang_when_the_worker_dies() {
        let f = fixture(ServeOptions::default());
        let (a, keys) = (snapshot(), keys());
        // A worker that dies holding the first job it takes.
        let jobs = f.jobs;
        let dead = std::thread::spawn(move || {
            let _job = jobs.recv();
            panic!("the answering thread dies");
        });
        let slot = f.answerer.reserve(1).unwrap();
        let err = f
            .answerer
            .answer(slot, a.clone(), Some(keys.clone()), vec![vec![0]])
            .await
            .unwrap_err();
        assert!(matches!(err, ServerError::Internal(_)), "{err}");
        assert!(dead.join().is_err());
        // Later requests are refused at once, and no slot leaks.
        let slot = f.answerer.reserve(1).unwrap();
        let err = f
            .answerer
            .answer(slot, a, Some(keys), vec![vec![0]])
            .await
            .unwrap_err();
        assert!(matches!(err, ServerError::Internal(_)), "{err}");
        assert_eq!(f.metrics.in_progress.get(), 0);
        assert_eq!(
            f.answerer.slots.available_permits(),
            ServeOptions::default().max_pending_answers
        );
    }

    #[tokio::test]
    async fn a_dead_worker_is_reported_and_its_requests_fail() {
        fn dies(_: Worker, jobs: mpsc::Receiver<Job>) {
            let _job = jobs.recv();
            panic!("the answering thread dies");
        }
        let metrics = Metrics::new().unwrap();
        let (answerer, worker, jobs) = Answerer::unstarted(&ServeOptions::default(), &metrics);
        let answerer = answerer.spawn(worker, jobs, dies).unwrap();
        assert!(answerer.is_alive());
        let (a, keys) = (snapshot(), keys());
        let slot = answerer.reserve(1).unwrap();
        let err = answerer
            .answer(slot, a, Some(keys), vec![vec![0]])
            .await
            .unwrap_err();
        assert!(matches!(err, ServerError::Internal(_)), "{err}");
        // The request failed when the job was dropped, as the thread unwound; it ends just after.
        for _ in 0..100 {
            if !answerer.is_alive() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the dead worker is still reported alive");
    }
}
