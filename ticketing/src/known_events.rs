//! Every event id Postgres has, with its short id, read incrementally by short id: what lets an
//! id nobody has (a made-up event id, a queue id whose short-id prefix names no event) be
//! answered "unknown" without asking Postgres each time.
//!
//! A miss refreshes the set (one small query for the ids added since) only when it is older than
//! [`FRESH`], so a flood of made-up ids costs at most one query per period, never one per
//! request, and never a lock. An event created on another process less than [`FRESH`] before the
//! set's last refresh may be told unknown for that long; a request that proves its event exists
//! (a signed entry token) must not go through this set.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

/// How fresh the set must be to answer "unknown" without asking Postgres.
pub const FRESH: Duration = Duration::from_millis(100);

/// Events whose short id is this far below the highest seen are read again at each refresh:
/// short ids are drawn at insert but rows become visible at commit, not necessarily in order.
const SHORT_ID_OVERLAP: i32 = 1000;

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
    /// Whether Postgres has the event.
    pub async fn contains(&self, db: &PgPool, event_id: Uuid) -> sqlx::Result<bool> {
        let asked_at = Instant::now();
        let mut known = self.known.lock().await;
        if !known.ids.contains(&event_id) {
            known.refresh_if_stale(db, asked_at).await?;
        }
        Ok(known.ids.contains(&event_id))
    }

    /// The id of the event with this short id, if Postgres has one.
    pub async fn by_short_id(&self, db: &PgPool, short_id: i32) -> sqlx::Result<Option<Uuid>> {
        let asked_at = Instant::now();
        let mut known = self.known.lock().await;
        if !known.by_short_id.contains_key(&short_id) {
            known.refresh_if_stale(db, asked_at).await?;
        }
        Ok(known.by_short_id.get(&short_id).copied())
    }

    /// An event this process just created or read: known at once.
    pub async fn note(&self, event_id: Uuid, short_id: i32) {
        self.known.lock().await.add(event_id, short_id);
    }
}

impl Known {
    fn add(&mut self, event_id: Uuid, short_id: i32) {
        self.ids.insert(event_id);
        self.by_short_id.insert(short_id, event_id);
        self.highest_short_id = self.highest_short_id.max(short_id);
    }

    async fn refresh_if_stale(&mut self, db: &PgPool, asked_at: Instant) -> sqlx::Result<()> {
        // Refreshed since this request arrived, or very recently: the answer stands.
        let fresh = self
            .refreshed_at
            .is_some_and(|at| at >= asked_at || at.elapsed() < FRESH);
        if fresh {
            return Ok(());
        }
        let added: Vec<(Uuid, i32)> =
            sqlx::query_as("SELECT id, short_id FROM events WHERE short_id > $1")
                .bind(self.highest_short_id - SHORT_ID_OVERLAP)
                .fetch_all(db)
                .await?;
        for (id, short_id) in added {
            self.add(id, short_id);
        }
        self.refreshed_at = Some(Instant::now());
        metrics::counter!("known_events_refreshes_total").increment(1);
        Ok(())
    }
}
