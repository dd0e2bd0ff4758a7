//! Group commit: the tasks that write reserved orders to Postgres.
//!
//! Checkouts hand their reserved orders to a bounded queue and await the outcome; a few writer
//! tasks take whatever has arrived (up to [`MAX_BATCH`]) and write it in one round trip and one
//! commit (`book_orders`, see its migration), each order accepted or refused on its own. Under
//! load the batches grow by themselves, without waiting: an order never waits for a batch to
//! fill, only for the write in progress to end.
//!
//! The writers are tasks of the process, not of a request: a client that goes away cannot cut a
//! write in half. On shutdown they drain the queue before the process exits.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use ticketing::live::LatencyWindow;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::db::bookings::{NewBooking, Written};

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
    /// Starts `writers` tasks taking up to `batch` orders at a time from a queue of `capacity`;
    /// each write's time goes to `load` (adaptive admission reads how busy the writers are).
    pub fn start(
        db: PgPool,
        writers: usize,
        batch: usize,
        capacity: usize,
        load: Arc<LatencyWindow>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let batch = batch.clamp(1, MAX_BATCH);
        let tasks = (0..writers.max(1))
            .map(|_| {
                tokio::spawn(write_batches(
                    db.clone(),
                    receiver.clone(),
                    batch,
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

async fn write_batches(
    db: PgPool,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    most: usize,
    load: Arc<LatencyWindow>,
) {
    loop {
        let mut batch = Vec::with_capacity(most);
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, most).await == 0 {
                return;
            }
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
        let writing = load.start_writing();
        let written = crate::db::bookings::insert_batch(&db, &orders).await;
        drop(writing);
        match written {
            Ok(mut outcomes) => {
                for (i, job) in due.into_iter().enumerate() {
                    let outcome = outcomes
                        .remove(&i)
                        .unwrap_or_else(|| Written::Refused("no answer for the order".into()));
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                let ambiguous = !is_definite_failure(&e);
                let unavailable = ticketing::db::is_unavailable(&e);
                tracing::warn!(error = %e, ambiguous, orders = due.len(), "booking batch failed");
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
