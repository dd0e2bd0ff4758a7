//! A short-lived in-process cache of events, so joins and polls do not query Postgres each time.
//! Entries live one second: a waiting-room change reaches every gateway within that. Ids no event
//! has (a made-up event id, a random queue id whose short-id prefix names nothing) are answered
//! from the set of known events, never by a query each (`ticketing::known_events`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use ticketing::known_events::KnownEvents;
use ticketing::redis_client::RedisClient;

use ticketing::event::{self, Event};

const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most events cached at once. A catalog of 100,000 events is not held in every gateway: beyond
/// this, entries past their freshness (kept only as a fallback while Postgres is away) go.
const MOST_CACHED: usize = 4096;

type Cached = (Instant, Arc<Event>);

#[derive(Clone)]
pub struct EventDirectory {
    db: PgPool,
    redis: RedisClient,
    by_id: Arc<RwLock<HashMap<Uuid, Cached>>>,
    // Short ids never change, so this map needs no expiry.
    short_ids: Arc<RwLock<HashMap<i32, Uuid>>>,
    known: Arc<KnownEvents>,
}

impl EventDirectory {
    pub fn new(db: PgPool, redis: RedisClient) -> Self {
        Self {
            db,
            redis,
            by_id: Arc::default(),
            short_ids: Arc::default(),
            known: Arc::default(),
        }
    }

    pub async fn get(&self, id: Uuid) -> sqlx::Result<Option<Arc<Event>>> {
        let cached = self.by_id.read().expect("cache lock").get(&id).cloned();
        if let Some((at, row)) = &cached {
            if at.elapsed() < FRESH_FOR {
                return Ok(Some(row.clone()));
            }
        }
        if cached.is_none() && !self.known.contains(&self.db, &self.redis, id).await? {
            return Ok(None);
        }
        match event::find(&self.db, id).await {
            Ok(row) => Ok(row.map(|row| self.remember(row))),
            // While Postgres is away the waiting room keeps running on what it last knew.
            Err(e) => match cached {
                Some((_, row)) => {
                    tracing::warn!(error = %e, "postgres unavailable; using the cached event");
                    Ok(Some(row))
                }
                None => Err(e),
            },
        }
    }

    pub async fn by_short_id(&self, short_id: i32) -> sqlx::Result<Option<Arc<Event>>> {
        let known = self
            .short_ids
            .read()
            .expect("cache lock")
            .get(&short_id)
            .copied();
        let id = match known {
            Some(id) => id,
            None => match self.known.by_short_id(&self.db, short_id).await? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        self.get(id).await
    }

    /// Whether Postgres has the event, from the set of known events (no query per unknown id).
    pub async fn exists(&self, id: Uuid) -> sqlx::Result<bool> {
        if self.by_id.read().expect("cache lock").contains_key(&id) {
            return Ok(true);
        }
        self.known.contains(&self.db, &self.redis, id).await
    }

    /// An event this gateway just created: known at once (not after the next refresh).
    pub async fn created(&self, id: Uuid, short_id: i32) {
        self.known.note(id, short_id).await;
    }

    /// Drops an event so the next read sees a change made through this gateway at once.
    pub fn forget(&self, id: Uuid) {
        self.by_id.write().expect("cache lock").remove(&id);
    }

    fn remember(&self, row: Event) -> Arc<Event> {
        let row = Arc::new(row);
        self.short_ids
            .write()
            .expect("cache lock")
            .insert(row.short_id, row.id);
        let mut by_id = self.by_id.write().expect("cache lock");
        if by_id.len() >= MOST_CACHED {
            by_id.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        }
        by_id.insert(row.id, (Instant::now(), row.clone()));
        row
    }
}
