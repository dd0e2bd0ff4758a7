//! Group commit: the tasks that write reserved orders to Postgres.
//!
//! Checkouts hand their reserved orders to a bounded queue and await the outcome; a few writer
//! tasks take whatever has arrived (up to [`MAX_BATCH`]) and write it in one round trip and one
//! commit (`book_orders`, see its migration), each order accepted or refused on its own. Under
//! load the batches grow by themselves: an order never waits for a batch to fill, only for the
//! write in progress to end.
//!
//! One write at a time while that keeps up: a writer that takes orders while another write is in
//! progress lets its batch grow until that write ends, the batch is full, or `patience` passes,
//! and only then writes beside it. Four writers each taking what had just arrived wrote batches
//! of ~4 at the booking ceiling; one write at a time writes them by the dozen, for fewer commits,
//! trigger runs and confirmations (BENCHMARKS.md: side by side with the writers as they were,
//! 1.039x the bookings a second and 166 against 176 us of the service's CPU a booking; Postgres
//! then spends on a booking what it spends on a least-write transaction). The other writers are
//! there for when a write stalls (a lock, a slow disk, a slowed Postgres): after `patience` they
//! write beside it, up to all of them at once.
//!
//! The writers are tasks of the process, not of a request: a client that goes away cannot cut a
//! write in half. On shutdown they drain the queue before the process exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use ticketing::live::LatencyWindow;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::db::bookings::{NewBooking, Written};

mod connection;

use connection::WriterConnection;

/// Most orders in one statement: each is one subtransaction, and Postgres keeps up to 64 of
/// them per transaction in shared memory before looking them up on disk.
pub const MAX_BATCH: usize = 32;

/// Why an order was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The queue is full: answer 503 at once instead of queueing behind it.
    Busy,
    /// The writers stopped (shutdown) before the order was queued.
    Closed,
}

struct Job {
    order: NewBooking,
    write_by: Instant,
    reply: oneshot::Sender<Written>,
}

/// The handle checkouts send orders through.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Writer {
    /// Starts `writers` tasks taking up to `batch` orders at a time from a queue of `capacity`,
    /// waiting up to `patience` for a write in progress before writing beside it; each write's
    /// time goes to `load` (adaptive admission reads how busy the writers are).
    pub fn start(
        db: PgPool,
        writers: usize,
        batch: usize,
        capacity: usize,
        patience: Duration,
        load: Arc<LatencyWindow>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let turn = Arc::new(Turn {
            receiver: Mutex::new(receiver),
            writing: AtomicUsize::new(0),
            ended: Notify::new(),
        });
        let batch = batch.clamp(1, MAX_BATCH);
        let tasks = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(write_batches(
                    WriterConnection::for_pool(&db),
                    turn.clone(),
                    batch,
                    patience,
                    load.clone(),
                ))
            })
            .collect();
        Self {
            queue,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        }
    }

    /// Writes `order` unless it would start after `write_by`, and returns what became of it.
    pub async fn write(&self, order: NewBooking, write_by: Instant) -> Result<Written, Rejected> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                order,
                write_by,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Rejected::Busy,
                mpsc::error::TrySendError::Closed(_) => Rejected::Closed,
            })?;
        // Queued, then no answer: the writer stopped somewhere between taking the order and
        // replying, perhaps after its commit. Not "never queued": the checkout must ask Postgres.
        Ok(answer
            .await
            .unwrap_or_else(|_| Written::Unknown("the writer stopped before answering".into())))
    }

    /// Waits (up to `grace`) for the writers to finish every order queued so far. Call once the
    /// server stopped taking requests: the writers end when the last handle is dropped.
    pub async fn drain(self, grace: Duration) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("writer tasks lock"));
        drop(self);
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("booking writers did not drain within the grace period");
        }
    }
}

/// What the writers share: the queue (one writer at a time takes from it) and the writes in
/// progress.
struct Turn {
    receiver: Mutex<mpsc::Receiver<Job>>,
    /// Writes started and not yet ended.
    writing: AtomicUsize,
    /// Told when a write ends.
    ended: Notify,
}

/// Counts a write in progress until dropped, and tells the waiting writer when it ends.
struct Writing<'a>(&'a Turn);

impl<'a> Writing<'a> {
    fn start(turn: &'a Turn) -> Self {
        turn.writing.fetch_add(1, Ordering::AcqRel);
        Self(turn)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

/// Takes the next batch: at least one order (none when the queue closed), and while another
/// write is in progress, more as they arrive, until that write ends, the batch holds `most`, or
/// `patience` passes. Holding the queue meanwhile keeps the other writers from writing what
/// arrives one order at a time.
async fn take_batch(turn: &Turn, most: usize, patience: Duration) -> Vec<Job> {
    let mut batch = Vec::with_capacity(most);
    let mut receiver = turn.receiver.lock().await;
    if receiver.recv_many(&mut batch, most).await == 0 {
        return batch;
    }
    let until = Instant::now() + patience;
    while batch.len() < most {
        let ended = turn.ended.notified();
        tokio::pin!(ended);
        // Registered before the count is read: a write that ends in between still wakes it.
        ended.as_mut().enable();
        if turn.writing.load(Ordering::Acquire) == 0 {
            break;
        }
        let room = most - batch.len();
        tokio::select! {
            () = &mut ended => {}
            // Cancel safe: when another branch wins, nothing was taken from the queue.
            taken = receiver.recv_many(&mut batch, room) => {
                if taken == 0 {
                    break;
                }
            }
            () = tokio::time::sleep_until(until) => break,
        }
    }
    batch
}

async fn write_batches(
    mut connection: WriterConnection,
    turn: Arc<Turn>,
    most: usize,
    patience: Duration,
    load: Arc<LatencyWindow>,
) {
    loop {
        let batch = take_batch(&turn, most, patience).await;
        if batch.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, late): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.write_by >= now);
        for job in late {
            let _ = job.reply.send(Written::TooLate);
        }
        if due.is_empty() {
            continue;
        }
        metrics::histogram!("booking_write_batch_size").record(due.len() as f64);
        let orders: Vec<&NewBooking> = due.iter().map(|j| &j.order).collect();
        let in_progress = Writing::start(&turn);
        let writing = load.start_writing();
        let written = match connection.ready().await {
            Ok(ready) => crate::db::bookings::insert_batch(&mut *ready, &orders)
                .await
                .map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        drop(writing);
        drop(in_progress);
        match written {
            Ok(mut outcomes) => {
                for (i, job) in due.into_iter().enumerate() {
                    let outcome = outcomes
                        .remove(&i)
                        .unwrap_or_else(|| Written::Refused("no answer for the order".into()));
                    let _ = job.reply.send(outcome);
                }
            }
            Err((e, sent)) => {
                let ambiguous = sent && !is_definite_failure(&e);
                // Even an error Postgres answered may be its last word on this connection
                // (57P01: terminated by an administrator): the next batch starts afresh.
                connection.discard();
                let unavailable = ticketing::db::is_unavailable(&e);
                tracing::warn!(error = %e, ambiguous, sent, orders = due.len(), "booking batch failed");
                for job in due {
                    let outcome = if ambiguous {
                        Written::Unknown(e.to_string())
                    } else {
                        Written::Failed {
                            unavailable,
                            error: e.to_string(),
                        }
                    };
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }
}

/// True when the error proves nothing was committed: the statement never left (no connection),
/// or Postgres answered it with an error (an autocommit statement that errs is rolled back).
/// Anything else (a socket error, a protocol error) may have hit after the commit.
pub fn is_definite_failure(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Database(_)
    )
}
