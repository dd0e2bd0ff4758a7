//! Entries whose page went silent leave the count of those ahead (`lua/queue_dormancy.lua`): the
//! line of each hot event is walked a bounded slice at a time, picking up where the last pass
//! stopped, so a line of a million is walked in under a minute at a steady, small cost.

use std::collections::HashMap;

use ticketing::queue::liveness::sweep_dormant;
use ticketing::queue::Place;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use ticketing::event::Event;

/// Slices of the line (of `DORMANCY_BOUND` entries each) one event gets per pass.
const SLICES_PER_PASS: usize = 10;

/// Where each event's walk stands.
#[derive(Default)]
pub struct Walks(HashMap<Uuid, Option<Place>>);

impl Walks {
    /// One pass over the hot events; events no longer hot are forgotten.
    pub async fn pass(&mut self, redis: &RedisClient, events: &[Event]) {
        self.0
            .retain(|id, _| events.iter().any(|event| event.id == *id));
        for event in events {
            let cursor = self.0.entry(event.id).or_default();
            for _ in 0..SLICES_PER_PASS {
                match sweep_dormant(redis, event.id, *cursor, &event.tier_codes).await {
                    Ok(step) => {
                        let event_id = event.id.to_string();
                        metrics::counter!("queue_dormant_total", "event" => event_id.clone())
                            .increment(step.made_dormant);
                        metrics::counter!("queue_dormant_dropped_total", "event" => event_id)
                            .increment(step.dropped);
                        *cursor = step.cursor;
                        if cursor.is_none() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(event_id = %event.id, %error, "dormancy sweep failed");
                        break;
                    }
                }
            }
        }
    }
}
