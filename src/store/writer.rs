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
//! * An `Err(StoreError)` means storage itself failed, possibly half-way: the whole batch is
//!   aborted and every caller in it is told so. Nothing of that batch is committed.
//! * Operations later in a batch see the effects of earlier ones, exactly as if each had its own
//!   transaction; so two sends with one idempotency key behave the same batched or not.
//! * An operation never changes in-memory state itself: it records the change in its batch
//!   (`WriteTables::publish`), and the writer applies it once the batch commits (`published`).

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::batch::WriteTables;
use super::published::Published;

/// Most operations applied in one transaction. Large enough to amortise an fsync over many
/// callers, small enough that one commit never holds a caller for long.
const MAX_BATCH: usize = 512;
/// Queued operations before senders wait: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 4096;

/// Handle for submitting write operations. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
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
        db: Arc<Database>,
        published: Arc<Published>,
    ) -> std::io::Result<(Writer, WriterThread)> {
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("sofiia-writer".into())
            .spawn(move || run(&db, &published, receiver))?;
        Ok((Writer { queue }, WriterThread(thread)))
    }

    /// Whether the writer thread is still taking operations.
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Runs `op` inside a group-committed write transaction and returns its value once the
    /// transaction is durable.
    pub async fn execute<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut WriteTables<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            op: Some(op),
            value: None,
            reply,
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// A queued operation with its reply channel, type-erased for the queue.
trait Job: Send {
    /// Applies the operation; an error means storage failed and the batch must abort.
    fn apply(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StoreError>;
    /// Answers the caller with the operation's value, or with why its batch did not commit.
    fn respond(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<F, T> {
    op: Option<F>,
    value: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for TypedJob<F, T>
where
    F: FnOnce(&mut WriteTables<'_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StoreError> {
        let op = self.op.take().ok_or(StoreError::Unavailable)?;
        self.value = Some(op(tables)?);
        Ok(())
    }

    fn respond(self: Box<Self>, committed: Result<(), StoreError>) {
        let TypedJob { value, reply, .. } = *self;
        let result = committed.and_then(|()| value.ok_or(StoreError::Unavailable));
        // The caller may have gone away (request cancelled); the data is committed regardless.
        let _ = reply.send(result);
    }
}

fn run(db: &Database, published: &Published, mut receiver: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(db, published, &mut batch);
        if let Err(error) = &outcome {
            tracing::error!(event = "commit_failed", batch = batch.len(), %error, "write batch aborted");
        }
        for job in batch.drain(..) {
            job.respond(outcome.clone());
        }
    }
}

/// Applies and commits one batch, then publishes its changes — before any caller is answered,
/// so a caller that sees its operation done also sees its effect in memory.
fn commit_batch(
    db: &Database,
    published: &Published,
    batch: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Database(e.to_string()))?;
    let applied = WriteTables::open(&txn)
        .map_err(StoreError::from)
        .and_then(|mut tables| {
            batch
                .iter_mut()
                .try_for_each(|job| job.apply(&mut tables))?;
            tables.flush()
        });
    let committed = match applied {
        Ok(written) => written,
        Err(error) => {
            txn.abort()?;
            return Err(error);
        }
    };
    if crate::failpoints::fails("store.commit") {
        txn.abort()?;
        return Err(StoreError::Database("failpoint store.commit".into()));
    }
    txn.commit()?;
    published.apply(committed);
    Ok(())
}
