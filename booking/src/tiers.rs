//! Each event's tiers as the booking rules need them (read through `ticketing::event`), cached
//! while they are used (tiers never change once created), and the set of event ids Postgres has.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use ticketing::event::{self, Tier};
use ticketing::known_events::KnownEvents;
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct EventTiers {
    pub tiers: Vec<Tier>,
    pub max_per_booking: u32,
    /// Entry tokens are refused before this, whoever signed them (set at creation, never
    /// changed, so cached like the tiers).
    pub on_sale_at: DateTime<Utc>,
}

impl EventTiers {
    pub fn by_code(&self, code: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.code == *code)
    }

    pub fn by_id(&self, id: Uuid) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.id == id)
    }

    pub fn codes(&self) -> Vec<TierCode> {
        self.tiers.iter().map(|t| t.code.clone()).collect()
    }
}

/// Most events whose tiers are cached at once: a catalog of 100,000 events is not held in every
/// booking service. Beyond it, the entries not used for [`UNUSED_FOR`] go (read again if asked).
const MOST_CACHED: usize = 4096;
const UNUSED_FOR: Duration = Duration::from_secs(60);

/// An event's tiers, and when they were last asked for.
struct Cached {
    tiers: Arc<EventTiers>,
    used: std::sync::Mutex<Instant>,
}

#[derive(Clone, Default)]
pub struct TierCatalog {
    events: Arc<RwLock<HashMap<Uuid, Cached>>>,
    /// Only requests that name an event on their own say (an availability read) are answered
    /// from this set of known ids; a signed entry token or a booking proves its event
    /// ([`TierCatalog::named`]).
    known: Arc<KnownEvents>,
}

impl TierCatalog {
    /// The event's tiers if they are cached (no I/O).
    pub fn cached(&self, event_id: Uuid) -> Option<Arc<EventTiers>> {
        let events = self.events.read().expect("tier cache lock");
        let cached = events.get(&event_id)?;
        *cached.used.lock().expect("tier cache use") = Instant::now();
        Some(cached.tiers.clone())
    }

    /// The event's tiers, or None when the event does not exist.
    pub async fn get(
        &self,
        db: &PgPool,
        redis: &RedisClient,
        event_id: Uuid,
    ) -> sqlx::Result<Option<Arc<EventTiers>>> {
        if let Some(found) = self.cached(event_id) {
            return Ok(Some(found));
        }
        if !self.known.contains(db, redis, event_id).await? {
            return Ok(None);
        }
        self.load(db, event_id).await
    }

    /// The tiers of an event something trustworthy names: an entry token the gateway signed
    /// for it, or a booking of it. Such an event exists (or existed) whatever the set of known
    /// ids says, which may be a moment older than the event: read from Postgres
    /// when not cached. None only when Postgres really has no such event.
    pub async fn named(
        &self,
        db: &PgPool,
        event_id: Uuid,
    ) -> sqlx::Result<Option<Arc<EventTiers>>> {
        if let Some(found) = self.cached(event_id) {
            return Ok(Some(found));
        }
        self.load(db, event_id).await
    }

    async fn load(&self, db: &PgPool, event_id: Uuid) -> sqlx::Result<Option<Arc<EventTiers>>> {
        let Some(event) = event::find(db, event_id).await? else {
            return Ok(None);
        };
        let tiers = Arc::new(EventTiers {
            tiers: event::tiers(db, &[event_id]).await?,
            max_per_booking: event.max_per_booking.max(1) as u32,
            on_sale_at: event.on_sale_at,
        });
        let mut events = self.events.write().expect("tier cache lock");
        if events.len() >= MOST_CACHED {
            events.retain(|_, c| c.used.lock().expect("tier cache use").elapsed() < UNUSED_FOR);
        }
        events.insert(
            event_id,
            Cached {
                tiers: tiers.clone(),
                used: std::sync::Mutex::new(Instant::now()),
            },
        );
        Ok(Some(tiers))
    }
}
