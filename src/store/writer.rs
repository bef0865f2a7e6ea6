//! The group-commit writer: the only place write transactions are opened.
//!
//! One dedicated thread (redb is synchronous) takes operations from a channel, applies as many as
//! are queued — up to `MAX_BATCH` — in order inside **one** write transaction, commits it once with
//! `Durability::Immediate`, and only then answers every caller. Throughput comes from sharing the
//! fsync among many callers; no caller is ever answered before its commit is durable.
//!
//! Invariants every operation must keep:
//! * It decides (validates, reads) before it mutates. A rejection is returned as the operation's
//!   *value* (`Ok(Err(..))`), having changed nothing, so its batch-mates commit unaffected.
//! * It can be run again: an operation may be applied more than once (in transactions that were
//!   aborted) before the one that commits, so it reads its inputs, never consumes them.
//! * Operations later in a batch see the effects of earlier ones, exactly as if each had its own
//!   transaction; so two sends with one idempotency key behave the same batched or not.
//! * An operation never changes in-memory state itself: it records the change in its batch
//!   (`WriteTables::publish`), and the writer applies it once the batch commits (`published`).
//!
//! Failures, by kind:
//! * An `Err` from one operation (a record that does not decode, a value too large) may have
//!   left the transaction half-changed, so the transaction is aborted — and the batch is run again
//!   without that operation, which alone is answered with its error. Its batch-mates commit.
//! * An I/O failure of the storage (`StoreError::Io`) is final: redb refuses every later write
//!   after one. The batch and everything still queued are answered `Unavailable`, the writer
//!   stops, and `Writer::failure` tells the service, which reports `error` and exits so that its
//!   service manager restarts it on a reopened file.
//!
//! Besides operations, the writer runs *database tasks* (`Writer::with_database`): work that needs
//! the database between batches — statistics, compaction — queued in order with the operations.
//! A task that needs the file to itself takes the gate's exclusive hold (`database`), so writes
//! queue and reads wait while it runs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::Histogram;
use parking_lot::Mutex;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot, watch};

use super::StoreError;
use super::batch::WriteTables;
use super::database::Gated;
use super::published::{Committed, Kept, Published};
use crate::monitoring::{self, series};

/// Most operations applied in one transaction. Large enough to amortise an fsync over many
/// callers, small enough that one commit never holds a caller for long.
const MAX_BATCH: usize = 512;
/// Queued operations before senders wait: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 4096;

/// Handle for submitting write operations. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Work>,
    failure: watch::Receiver<Option<String>>,
    commits: Arc<RecentCommits>,
}

/// How long the last `RECENT_COMMITS` write transactions took: the health card's commit p95,
/// read from memory.
#[derive(Default)]
struct RecentCommits(Mutex<VecDeque<Duration>>);

const RECENT_COMMITS: usize = 1024;

impl RecentCommits {
    fn record(&self, took: Duration) {
        let mut durations = self.0.lock();
        if durations.len() == RECENT_COMMITS {
            durations.pop_front();
        }
        durations.push_back(took);
    }

    fn p95(&self) -> Option<Duration> {
        let mut durations: Vec<Duration> = self.0.lock().iter().copied().collect();
        durations.sort_unstable();
        let at = (durations.len() * 95).div_ceil(100).checked_sub(1)?;
        durations.get(at).copied()
    }
}

/// The writer thread; joining it waits until every queued operation has been committed.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    /// Waits for the writer to drain. Call after every `Writer` handle has been dropped.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!(event = "writer_panicked", "the writer thread panicked");
        }
    }
}

impl Writer {
    /// Starts the writer thread; it applies every committed batch's changes to `published`.
    pub fn start(
        db: Arc<Gated>,
        published: Arc<Published>,
    ) -> std::io::Result<(Writer, WriterThread)> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let (failed, failure) = watch::channel(None);
        let commits = Arc::new(RecentCommits::default());
        let timing = CommitTiming {
            duration: metrics::histogram!(monitoring::DB_COMMIT_DURATION),
            batch_size: metrics::histogram!(monitoring::DB_BATCH_SIZE),
            recent: commits.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sofiia-writer".into())
            .spawn(move || run(&db, &published, &timing, receiver, &failed))?;
        Ok((
            Writer {
                queue,
                failure,
                commits,
            },
            WriterThread(thread),
        ))
    }

    /// The 95th percentile of the last write transactions' durations; `None` before the first.
    pub fn commit_p95(&self) -> Option<Duration> {
        self.commits.p95()
    }

    /// Operations the queue holds; at `QUEUE_CAPACITY` senders wait.
    pub fn queue_depth(&self) -> usize {
        QUEUE_DEPTH - self.queue.capacity()
    }

    pub const QUEUE_CAPACITY: usize = QUEUE_DEPTH;

    /// Whether the writer thread is still taking operations.
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Resolves with the cause when storage has failed for good and the writer has stopped;
    /// never, while it runs.
    pub async fn failure(&self) -> String {
        let mut failure = self.failure.clone();
        match failure.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone().unwrap_or_default(),
            // The writer ended without failing (shutdown): nothing to report, ever.
            Err(_) => std::future::pending().await,
        }
    }

    /// Runs `op` inside a group-committed write transaction and returns its value once the
    /// transaction is durable. `op` may run more than once (see the module's invariants).
    pub async fn execute<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut(&mut WriteTables<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            op,
            outcome: None,
            reply,
        });
        self.queue
            .send(Work::Operation(job))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Runs `task` on the writer thread once every operation queued before it has committed, and
    /// before any queued after it is applied. No write transaction is live while it runs.
    pub async fn with_database<T, F>(&self, task: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Gated) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task: DatabaseTask = Box::new(move |db| {
            // The caller may have gone away; the task ran regardless.
            let _ = reply.send(task(db));
        });
        self.queue
            .send(Work::Task(task))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)
    }
}

/// What the queue carries.
enum Work {
    Operation(Box<dyn Job>),
    Task(DatabaseTask),
}

type DatabaseTask = Box<dyn FnOnce(&Gated) + Send>;

/// A queued operation with its reply channel, type-erased for the queue.
trait Job: Send {
    /// Applies the operation, keeping its value; an error is the operation's own, and is kept
    /// as its answer.
    fn apply(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StoreError>;
    /// Whether its last application failed (and it is out of the batch).
    fn failed(&self) -> bool;
    /// Answers the caller with the operation's value — or its own error — once the batch is
    /// committed, or with why the batch did not commit.
    fn respond(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<F, T> {
    op: F,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for TypedJob<F, T>
where
    F: FnMut(&mut WriteTables<'_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StoreError> {
        let outcome = (self.op)(tables);
        let result = match &outcome {
            Ok(_) => Ok(()),
            Err(error) => Err(error.clone()),
        };
        self.outcome = Some(outcome);
        result
    }

    fn failed(&self) -> bool {
        matches!(self.outcome, Some(Err(_)))
    }

    fn respond(self: Box<Self>, committed: Result<(), StoreError>) {
        let TypedJob { outcome, reply, .. } = *self;
        let result = match (committed, outcome) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), None) => Err(StoreError::Unavailable),
            (Err(batch), _) => Err(batch),
        };
        // The caller may have gone away (request cancelled); the data is committed regardless.
        let _ = reply.send(result);
    }
}

fn run(
    db: &Gated,
    published: &Published,
    timing: &CommitTiming,
    mut receiver: mpsc::Receiver<Work>,
    failed: &watch::Sender<Option<String>>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        // A task waits for the operations queued before it, and runs before those after it.
        let mut task = None;
        match first {
            Work::Operation(job) => batch.push(job),
            Work::Task(queued) => task = Some(queued),
        }
        while task.is_none() && batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Work::Operation(job)) => batch.push(job),
                Ok(Work::Task(queued)) => task = Some(queued),
                Err(_) => break,
            }
        }
        if !batch.is_empty()
            && let Err(cause) = commit_and_answer(db, published, timing, &mut batch)
        {
            stop(receiver, failed, task, cause);
            return;
        }
        if let Some(task) = task {
            task(db);
        }
    }
}

/// The writer's own series: how long a batch took from its first operation to its durable
/// commit, and how many operations it carried.
struct CommitTiming {
    duration: Histogram,
    batch_size: Histogram,
    recent: Arc<RecentCommits>,
}

/// Commits the batch and answers its callers; the cause when storage failed for good.
fn commit_and_answer(
    db: &Gated,
    published: &Published,
    timing: &CommitTiming,
    batch: &mut Vec<Box<dyn Job>>,
) -> Result<(), String> {
    let started = Instant::now();
    let outcome = commit_batch(&db.for_writing(), published, batch);
    let took = started.elapsed();
    timing.duration.record(took.as_secs_f64());
    timing.recent.record(took);
    timing.batch_size.record(batch.len() as f64);
    if let Err(error) = &outcome {
        tracing::error!(event = "commit_failed", batch = batch.len(), %error, "write batch aborted");
    }
    for job in batch.drain(..) {
        job.respond(outcome.clone());
    }
    match outcome {
        Err(StoreError::Io(cause)) => {
            tracing::error!(event = "storage_failed", %cause, "storage failed; the writer stops and the service must restart");
            Err(cause)
        }
        _ => Ok(()),
    }
}

/// After a storage failure nothing more can commit: what is queued is refused, new work is
/// turned away, and the service is told.
fn stop(
    mut receiver: mpsc::Receiver<Work>,
    failed: &watch::Sender<Option<String>>,
    task: Option<DatabaseTask>,
    cause: String,
) {
    receiver.close();
    // Dropping a task answers its caller `Unavailable`.
    drop(task);
    while let Ok(work) = receiver.try_recv() {
        if let Work::Operation(job) = work {
            job.respond(Err(StoreError::Unavailable));
        }
    }
    failed.send_replace(Some(cause));
}

/// Applies and commits one batch, then publishes its changes — before any caller is answered,
/// so a caller that sees its operation done also sees its effect in memory. An operation that
/// fails is left out and the rest are applied again in a fresh transaction.
fn commit_batch(
    db: &Database,
    published: &Published,
    batch: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        match apply_batch(&txn, batch, published.wanted()) {
            Applied::Committable(committed) => {
                if crate::failpoints::fails("store.commit") {
                    txn.abort()?;
                    return Err(StoreError::Database("failpoint store.commit".into()));
                }
                if crate::failpoints::fails("store.io") {
                    txn.abort()?;
                    return Err(StoreError::Io("failpoint store.io".into()));
                }
                txn.commit()?;
                series::audit_events(&committed.audit_events);
                published.apply(committed);
                return Ok(());
            }
            Applied::OperationFailed => txn.abort()?,
            Applied::Failed(error) => {
                txn.abort()?;
                return Err(error);
            }
        }
    }
}

enum Applied {
    /// Every operation still in the batch applied; its changes, to publish after the commit.
    Committable(Committed),
    /// An operation failed and is now out of the batch: the transaction must be aborted and the
    /// rest applied again.
    OperationFailed,
    /// Storage failed: the whole batch fails.
    Failed(StoreError),
}

/// Applies the operations that have not failed, in order, stopping at the first that does.
fn apply_batch(txn: &redb::WriteTransaction, batch: &mut [Box<dyn Job>], kept: Kept) -> Applied {
    let mut tables = match WriteTables::open(txn, kept) {
        Ok(tables) => tables,
        Err(error) => return Applied::Failed(error.into()),
    };
    for job in batch.iter_mut().filter(|job| !job.failed()) {
        match job.apply(&mut tables) {
            Ok(()) => {}
            Err(error @ StoreError::Io(_)) => return Applied::Failed(error),
            Err(error) => {
                tracing::error!(event = "operation_failed", %error, "a write operation failed; its batch-mates are applied again without it");
                return Applied::OperationFailed;
            }
        }
    }
    match tables.flush() {
        Ok(committed) => Applied::Committable(committed),
        Err(error) => Applied::Failed(error),
    }
}
