//! Refused polls still say their entry is alive. A poll the rate limits turn away comes from a
//! live page all the same; if it counted for nothing, a crowd behind one address that outgrew its
//! ceiling would see its members dropped from the line as abandoned. So a refused poll that
//! carries a valid place receipt for its queue id is noted here (no Redis call on the refusal's
//! path), and once a second the notes are written to the events' liveness bitmaps in bounded
//! batches. Memory is bounded: beyond `MAX_PENDING` notes between two flushes, more are counted
//! and dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketing::queue::{liveness, Receipt};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

/// Most notes held between two flushes (about 16 bytes each).
const MAX_PENDING: usize = 200_000;

#[derive(Default)]
pub struct SignsOfLife {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    by_event: HashMap<Uuid, HashSet<u64>>,
    count: usize,
}

impl SignsOfLife {
    /// Notes that the entry this receipt names polled.
    pub fn note(&self, receipt: &Receipt) {
        let mut pending = self.pending.lock().expect("signs of life lock");
        if pending.count >= MAX_PENDING {
            metrics::counter!("queue_signs_of_life_dropped_total").increment(1);
            return;
        }
        if pending
            .by_event
            .entry(receipt.event_id)
            .or_default()
            .insert(receipt.place.arrival())
        {
            pending.count += 1;
        }
    }

    /// Writes what was noted since the last flush.
    pub async fn flush(&self, redis: &RedisClient) {
        let by_event =
            std::mem::take(&mut *self.pending.lock().expect("signs of life lock")).by_event;
        for (event_id, arrivals) in by_event {
            let arrivals: Vec<u64> = arrivals.into_iter().collect();
            match liveness::mark_alive(redis, event_id, &arrivals).await {
                Ok(()) => {
                    metrics::counter!("queue_signs_of_life_total").increment(arrivals.len() as u64)
                }
                Err(e) => {
                    tracing::warn!(%event_id, error = %e, "cannot record refused polls as signs of life")
                }
            }
        }
    }
}

/// Flushes once a second for as long as the gateway runs.
pub fn flush_in_background(signs: &Arc<SignsOfLife>, redis: RedisClient) {
    let signs = Arc::downgrade(signs);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let Some(signs) = signs.upgrade() else { return };
            signs.flush(&redis).await;
        }
    });
}
