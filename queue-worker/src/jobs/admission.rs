//! Admission: every tick, for every watched event, bounded admission steps until the rate (or,
//! with the room off, the drain) has had its due, then the line's marks saved to Postgres about
//! once a second. Opening a sale needs nothing here: the pre-queue already stands in its drawn
//! order, and the first step after `on_sale_at` admits from its head. One event's trouble is
//! logged and counted; the tick goes on with the others. Pages that were closed asked to leave
//! after a grace; those still due leave here, before the step, so their slots go to the next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use ticketing::queue::{self, admit::STEP_BOUND, AdmissionStep, Leaving, QueueMarks};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use ticketing::event::Event;

/// Most steps one event takes per tick: up to 20,000 entries off its head, so a room turned off
/// with a long line drains at once in seconds while every other event still gets its tick.
const STEPS_PER_TICK: usize = 20;

/// Most closed pages' leaves one event takes per tick.
const LEAVES_PER_TICK: usize = 500;

/// How often an event's marks are saved when they change.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What the worker remembers between ticks: the marks it last saved, per event.
#[derive(Default)]
pub struct Admission {
    saved: HashMap<Uuid, (QueueMarks, Instant)>,
}

/// How one tick went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub events: usize,
    pub failed: usize,
}

impl Admission {
    pub async fn tick(&mut self, db: &PgPool, redis: &RedisClient, events: &[Event]) -> TickReport {
        let mut report = TickReport {
            events: events.len(),
            failed: 0,
        };
        for event in events {
            if let Err(error) = self.admit_event(db, redis, event).await {
                report.failed += 1;
                tracing::warn!(event_id = %event.id, error = %error, "admission step failed");
                metrics::counter!("queue_admission_errors_total", "event" => event.id.to_string())
                    .increment(1);
            }
        }
        report
    }

    async fn admit_event(
        &mut self,
        db: &PgPool,
        redis: &RedisClient,
        event: &Event,
    ) -> anyhow::Result<()> {
        let (event_id, tiers) = (event.id, &event.tier_codes);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for queue_id in queue::due_to_leave(redis, event_id, now_ms, LEAVES_PER_TICK).await? {
            // The script checks again by Redis's clock, and that no poll cancelled it.
            if queue::leave(redis, event_id, queue_id, Leaving::IfDue, tiers).await? {
                metrics::counter!("queue_left_total", "how" => "closed").increment(1);
            }
        }
        let mut total = AdmissionStep::default();
        for _ in 0..STEPS_PER_TICK {
            let step = queue::admit(redis, event_id, STEP_BOUND, tiers).await?;
            total.admitted += step.admitted;
            total.dropped += step.dropped;
            total.expired += step.expired;
            total.parked += step.parked;
            total.marks = step.marks;
            if !step.more {
                break;
            }
        }
        record(event_id, &total);
        let due = match self.saved.get(&event_id) {
            Some((marks, at)) => *marks != total.marks && at.elapsed() >= SAVE_EVERY,
            None => true,
        };
        if due {
            total.marks.save(db, event_id).await?;
            self.saved.insert(event_id, (total.marks, Instant::now()));
        }
        Ok(())
    }
}

fn record(event_id: Uuid, step: &AdmissionStep) {
    tracing::debug!(%event_id, ?step, "admission tick");
    let event = event_id.to_string();
    if step.admitted > 0 {
        metrics::counter!("queue_admissions_total", "event" => event.clone())
            .increment(step.admitted as u64);
    }
    if step.dropped > 0 {
        metrics::counter!("queue_abandoned_total", "event" => event.clone())
            .increment(step.dropped as u64);
    }
    if step.parked > 0 {
        metrics::counter!("queue_parked_total", "event" => event.clone())
            .increment(step.parked as u64);
    }
    if step.expired > 0 {
        metrics::counter!("queue_tokens_expired_total", "event" => event)
            .increment(step.expired as u64);
    }
}
