//! Every event id Postgres has, with its short id, read incrementally by short id: what lets an
//! id nobody has (a made-up event id, a queue id whose short-id prefix names no event) be
//! answered "unknown" without asking Postgres each time.
//!
//! A miss refreshes the set (one small query for the ids added since) only when it is older than
//! [`FRESH`], so a flood of made-up ids costs at most one query per period, never one per
//! request, and never a lock. An event created on another process since the last refresh is not
//! in the set yet: a miss on a fresh set also asks Redis whether the event has its waiting-room
//! settings there (every event gets them when it is created), one `EXISTS`, so such an event is
//! never told unknown. A request that proves its event exists (a signed entry token) need not go
//! through this set at all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

/// How fresh the set must be to answer a short id "unknown" without asking Postgres.
pub const FRESH: Duration = Duration::from_millis(100);

/// How fresh the set must be to answer an event id: events created since are found in Redis.
const ID_MISS_FRESH: Duration = Duration::from_secs(1);

/// Events whose short id is this far below the highest seen are read again at each refresh:
/// short ids are drawn at insert but rows become visible at commit, not necessarily in order.
const SHORT_ID_OVERLAP: i32 = 1000;

/// Events that may have been created since the last refresh, at most: far more than any
/// operator creates in a moment.
const NEW_SHORT_IDS: i32 = 10_000;

#[derive(Default)]
pub struct KnownEvents {
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    by_short_id: HashMap<i32, Uuid>,
    ids: std::collections::HashSet<Uuid>,
    highest_short_id: i32,
    refreshed_at: Option<Instant>,
}

impl KnownEvents {
    /// Whether Postgres has the event (or Redis has its settings: an event created since the
    /// last refresh).
    pub async fn contains(
        &self,
        db: &PgPool,
        redis: &RedisClient,
        event_id: Uuid,
    ) -> sqlx::Result<bool> {
        let asked_at = Instant::now();
        {
            let mut known = self.known.lock().await;
            if known.ids.contains(&event_id) {
                return Ok(true);
            }
            // Redis answers for the events created since: the set need not be as fresh here.
            known.refresh_if_stale(db, asked_at, ID_MISS_FRESH).await?;
            if known.ids.contains(&event_id) {
                return Ok(true);
            }
        }
        let in_redis: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(EventKeys::new(event_id).queue_config())
            .query_async(&mut redis.clone())
            .await;
        // Redis cannot say: the caller asks Postgres (correct, if not cheap, while Redis is away).
        Ok(in_redis.unwrap_or(true))
    }

    /// The id of the event with this short id, if Postgres has one. Short ids are handed out
    /// in order, so only one just above those known can be an event created since the last
    /// refresh: any other unknown one (a random queue id's prefix) is answered without asking.
    /// One that may be new waits for a refresh begun after it was asked (at most [`FRESH`]
    /// away), so an event created a moment ago on another process is found, never told unknown.
    pub async fn by_short_id(&self, db: &PgPool, short_id: i32) -> sqlx::Result<Option<Uuid>> {
        let asked_at = Instant::now();
        loop {
            let wait = {
                let mut known = self.known.lock().await;
                if let Some(id) = known.by_short_id.get(&short_id) {
                    return Ok(Some(*id));
                }
                if !known.may_be_new(short_id) || known.refreshed_after(asked_at) {
                    return Ok(None);
                }
                match known
                    .refreshed_at
                    .map(|at| FRESH.saturating_sub(at.elapsed()))
                {
                    Some(wait) if !wait.is_zero() => wait,
                    _ => {
                        known.refresh(db).await?;
                        return Ok(known.by_short_id.get(&short_id).copied());
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// An event this process just created or read: known at once.
    pub async fn note(&self, event_id: Uuid, short_id: i32) {
        self.known.lock().await.add(event_id, short_id);
    }
}

impl Known {
    /// Whether an unknown short id may belong to an event created since the last refresh (or
    /// to one whose row became visible late).
    fn may_be_new(&self, short_id: i32) -> bool {
        self.refreshed_at.is_none()
            || (short_id > self.highest_short_id - SHORT_ID_OVERLAP
                && short_id <= self.highest_short_id.saturating_add(NEW_SHORT_IDS))
    }

    fn add(&mut self, event_id: Uuid, short_id: i32) {
        self.ids.insert(event_id);
        self.by_short_id.insert(short_id, event_id);
        self.highest_short_id = self.highest_short_id.max(short_id);
    }

    fn refreshed_after(&self, asked_at: Instant) -> bool {
        self.refreshed_at.is_some_and(|at| at >= asked_at)
    }

    async fn refresh_if_stale(
        &mut self,
        db: &PgPool,
        asked_at: Instant,
        fresh_for: Duration,
    ) -> sqlx::Result<()> {
        // Refreshed since this request arrived, or recently enough: the answer stands.
        let fresh = self.refreshed_after(asked_at)
            || self.refreshed_at.is_some_and(|at| at.elapsed() < fresh_for);
        if fresh {
            return Ok(());
        }
        self.refresh(db).await
    }

    async fn refresh(&mut self, db: &PgPool) -> sqlx::Result<()> {
        // The time the refresh began: anything committed before it is in what it reads.
        let began = Instant::now();
        let added: Vec<(Uuid, i32)> =
            sqlx::query_as("SELECT id, short_id FROM events WHERE short_id > $1")
                .bind(self.highest_short_id - SHORT_ID_OVERLAP)
                .fetch_all(db)
                .await?;
        for (id, short_id) in added {
            self.add(id, short_id);
        }
        self.refreshed_at = Some(began);
        metrics::counter!("known_events_refreshes_total").increment(1);
        Ok(())
    }
}
