//! Each event's tiers, cached for the life of the process: tiers never change once created.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TierInfo {
    pub id: Uuid,
    pub code: String,
    pub capacity: i32,
    pub price_cents: i64,
}

#[derive(Debug, Clone)]
pub struct EventTiers {
    pub tiers: Vec<TierInfo>,
    pub max_per_booking: u32,
}

impl EventTiers {
    pub fn by_code(&self, code: &str) -> Option<&TierInfo> {
        self.tiers.iter().find(|t| t.code == code)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&TierInfo> {
        self.tiers.iter().find(|t| t.id == id)
    }

    pub fn codes(&self) -> Vec<String> {
        self.tiers.iter().map(|t| t.code.clone()).collect()
    }
}

/// Ids Postgres did not have, remembered briefly so a flood of made-up ids costs one lookup each
/// per [`MISS_TTL`], not one per request (and never a lock or a rebuild).
const MISS_TTL: Duration = Duration::from_secs(5);
/// Most unknown ids remembered; past it the oldest half is forgotten.
const MISS_CAPACITY: usize = 10_000;

#[derive(Clone, Default)]
pub struct TierCatalog {
    events: Arc<RwLock<HashMap<Uuid, Arc<EventTiers>>>>,
    misses: Arc<RwLock<HashMap<Uuid, Instant>>>,
}

impl TierCatalog {
    /// The event's tiers if they are cached (no I/O).
    pub fn cached(&self, event_id: Uuid) -> Option<Arc<EventTiers>> {
        self.events
            .read()
            .expect("tier cache lock")
            .get(&event_id)
            .cloned()
    }

    /// The event's tiers, or None when the event does not exist.
    pub async fn get(&self, db: &PgPool, event_id: Uuid) -> sqlx::Result<Option<Arc<EventTiers>>> {
        if let Some(found) = self.events.read().expect("tier cache lock").get(&event_id) {
            return Ok(Some(found.clone()));
        }
        if let Some(seen) = self.misses.read().expect("miss cache lock").get(&event_id) {
            if seen.elapsed() < MISS_TTL {
                return Ok(None);
            }
        }
        let found = self.load(db, event_id).await?;
        if found.is_none() {
            let mut misses = self.misses.write().expect("miss cache lock");
            if misses.len() >= MISS_CAPACITY {
                let mut ages: Vec<Instant> = misses.values().copied().collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                misses.retain(|_, seen| *seen > cutoff);
            }
            misses.insert(event_id, Instant::now());
        }
        Ok(found)
    }

    async fn load(&self, db: &PgPool, event_id: Uuid) -> sqlx::Result<Option<Arc<EventTiers>>> {
        let Some(max_per_booking): Option<i32> =
            sqlx::query_scalar("SELECT max_per_booking FROM events WHERE id = $1")
                .bind(event_id)
                .fetch_optional(db)
                .await?
        else {
            return Ok(None);
        };
        let rows: Vec<(Uuid, String, i32, i64)> = sqlx::query_as(
            "SELECT id, code, capacity, price_cents FROM ticket_tiers WHERE event_id = $1 ORDER BY position",
        )
        .bind(event_id)
        .fetch_all(db)
        .await?;
        let tiers = Arc::new(EventTiers {
            tiers: rows
                .into_iter()
                .map(|(id, code, capacity, price_cents)| TierInfo {
                    id,
                    code,
                    capacity,
                    price_cents,
                })
                .collect(),
            max_per_booking: max_per_booking.max(1) as u32,
        });
        self.events
            .write()
            .expect("tier cache lock")
            .insert(event_id, tiers.clone());
        Ok(Some(tiers))
    }
}
