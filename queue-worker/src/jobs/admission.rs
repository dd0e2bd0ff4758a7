//! Admission: open sales at their time (placing the pre-queue in random order), then admit
//! waiting buyers at each event's rate.

use std::collections::HashSet;

use chrono::Utc;
use ticketing::queue;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use crate::events::WatchedEvent;

/// Events known to be open, so the worker stops asking.
#[derive(Default)]
pub struct Openings {
    open: HashSet<Uuid>,
}

impl Openings {
    /// Forgets an event whose Redis state may be gone, so its opening is checked again.
    pub fn forget(&mut self, event_id: Uuid) {
        self.open.remove(&event_id);
    }
}

/// One admission tick over every event with a waiting room.
#[tracing::instrument(skip_all, err)]
pub async fn tick(
    redis: &RedisClient,
    events: &[WatchedEvent],
    openings: &mut Openings,
) -> redis::RedisResult<()> {
    let now = Utc::now();
    for event in events {
        if !event.wr_enabled {
            // Tokens of instant admissions still expire and free their slot.
            queue::admit(redis, event.id).await?;
            continue;
        }
        if event.on_sale_at <= now && !openings.open.contains(&event.id) {
            if let Some(placed) =
                queue::open_sale(redis, event.id, event.on_sale_at.timestamp_millis()).await?
            {
                tracing::info!(event_id = %event.id, placed, "sale opened; pre-queue placed in random order");
            }
            if queue::is_open(redis, event.id).await? {
                openings.open.insert(event.id);
            }
        }
        let tick = queue::admit(redis, event.id).await?;
        tracing::debug!(event_id = %event.id, ?tick, "admission tick");
        let event_label = event.id.to_string();
        if tick.admitted > 0 {
            metrics::counter!("queue_admissions_total", "event" => event_label.clone())
                .increment(tick.admitted as u64);
        }
        if tick.dropped > 0 {
            metrics::counter!("queue_abandoned_total", "event" => event_label.clone())
                .increment(tick.dropped as u64);
        }
        if tick.expired > 0 {
            metrics::counter!("queue_tokens_expired_total", "event" => event_label)
                .increment(tick.expired as u64);
        }
    }
    Ok(())
}
