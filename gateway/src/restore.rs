//! Putting an event's waiting room back in Redis after Redis lost it (flush, restart, failover
//! to an empty replica): settings and line marks from Postgres, then the inventory. Entries come
//! back one by one from their receipts, as their pages poll (see `queue_entry.lua`).
//!
//! After a loss every request for the event finds it missing at once. Each running the restore
//! would queue them all on the event's lock in Postgres and drain the pool the sale needs, so in
//! each gateway one request restores (in a task of its own, which a client that gives up cannot
//! cut in half) and the others wait for it, up to [`PATIENCE`], then answer 503 with
//! `Retry-After`. Between gateways, the restore itself is idempotent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use ticketing::detached;
use ticketing::failure::Failure;
use ticketing::queue::{self, QueueMarks, Sync};
use ticketing::rebuild::{self, When};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use crate::error::ApiError;
use ticketing::event::{self, Event};

/// The 503 while an event's line is restored after a Redis loss.
const RESTORING: &str = "the line is being restored; try again";

/// How long a request waits for another's restore of the same event before answering 503.
const PATIENCE: Duration = Duration::from_secs(3);

/// The restores running in this gateway, one per event.
#[derive(Default)]
pub struct Restores(Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>);

impl Restores {
    /// Puts `event` back, or waits for the request already doing it. `Ok` means a restore ran
    /// (well or not): the caller asks Redis again and answers from what it finds.
    pub async fn restore(
        &self,
        db: &PgPool,
        redis: &RedisClient,
        event: &Event,
    ) -> Result<(), ApiError> {
        let (db, redis, event_of_task) = (db.clone(), redis.clone(), event.clone());
        self.once(event.id, PATIENCE, async move {
            restore(&db, &redis, &event_of_task).await
        })
        .await
    }

    /// Runs `work` for `event_id` unless a run for it is under way here; then waits for that
    /// one to end, up to `patience` (503 past it). The work runs in a task of its own.
    async fn once(
        &self,
        event_id: Uuid,
        patience: Duration,
        work: impl std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
    ) -> Result<(), ApiError> {
        let gate = self.running().entry(event_id).or_default().clone();
        let Ok(mine) = gate.clone().try_lock_owned() else {
            metrics::counter!("queue_restores_total", "outcome" => "waited").increment(1);
            return match tokio::time::timeout(patience, gate.lock()).await {
                Ok(_done) => Ok(()),
                Err(_) => Err(Failure::Unavailable(RESTORING).into()),
            };
        };
        metrics::counter!("queue_restores_total", "outcome" => "ran").increment(1);
        let done = detached::finish(async move {
            // Held until the work ends, even if the request that started it is gone.
            let _mine = mine;
            work.await
        })
        .await;
        let mut running = self.running();
        if running
            .get(&event_id)
            .is_some_and(|g| Arc::ptr_eq(g, &gate))
        {
            running.remove(&event_id);
        }
        done
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>> {
        // Nothing panics while holding it; a poisoned map still holds sound gates.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn restore(db: &PgPool, redis: &RedisClient, event: &Event) -> Result<(), ApiError> {
    let marks = QueueMarks::load(db, event.id).await?;
    // The directory's copy may be a second old: an operator's pause just made must not be undone.
    let room = event::find(db, event.id)
        .await?
        .map_or_else(|| event.waiting_room(), |fresh| fresh.waiting_room());
    queue::sync_config(
        redis,
        event.id,
        &room,
        event.on_sale_at.timestamp_millis(),
        Sync::AfterLoss(marks),
    )
    .await?;
    // The line comes back entry by entry (each with its receipt): the worker admits from it.
    ticketing::activity::note(redis, event.id).await;
    rebuild::rebuild_inventory(db, redis, event.id, When::Missing)
        .await
        .map_err(|e| {
            tracing::warn!(error = ?e, "cannot restore the event's inventory");
            ApiError::Failure(Failure::Unavailable(RESTORING))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn fifty_requests_after_a_loss_run_one_restore_and_all_see_it_done() {
        let restores = Arc::new(Restores::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let event = Uuid::new_v4();
        let asks = (0..50).map(|_| {
            let (restores, runs) = (restores.clone(), runs.clone());
            tokio::spawn(async move {
                restores
                    .once(event, Duration::from_secs(2), async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok(())
                    })
                    .await
            })
        });
        for answer in futures::future::join_all(asks).await {
            assert!(answer.unwrap().is_ok());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(restores.running().is_empty(), "nothing kept once done");
        // Another event, or the same one later, runs again.
        restores
            .once(event, Duration::from_secs(2), async { Ok(()) })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_slow_restore_answers_the_waiters_503_and_survives_its_own_caller() {
        let restores = Arc::new(Restores::default());
        let finished = Arc::new(AtomicUsize::new(0));
        let event = Uuid::new_v4();
        let done = finished.clone();
        let first = {
            let restores = restores.clone();
            tokio::spawn(async move {
                restores
                    .once(event, Duration::from_secs(5), async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waited = restores
            .once(event, Duration::from_millis(50), async { Ok(()) })
            .await;
        assert!(matches!(
            waited,
            Err(ApiError::Failure(Failure::Unavailable(_)))
        ));
        // The request that started it gives up: the restore still finishes.
        first.abort();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
