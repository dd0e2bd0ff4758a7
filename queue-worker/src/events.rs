//! The events the worker looks after: the **hot set**, the events that have something to do, not
//! the catalog. An event is hot while
//! - it was active lately (`ticketing::activity`: a join, a hold, a cancellation, an operator's
//!   change marks it, on Redis's clock), or
//! - its sale opens within the lead or opened a moment ago (an indexed range of `on_sale_at`), or
//! - it still has people in line, admitted buyers, holds or pending leaves (checked before it is
//!   dropped; such an event is marked again and stays).
//!
//! Newly marked events are picked up at the start of every admission tick, from the marks made
//! since the last one: a first join is admitted within one tick. Every other pass of every job
//! costs in proportion to the hot set; an event outside it costs nothing per pass. The
//! reconciler alone also visits quiet events, a bounded page at a time, round-robin
//! (`jobs::reconcile`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use ticketing::activity;
use ticketing::event::{self, Event};
use ticketing::keys::EventKeys;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

/// What makes an event hot, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct HotSettings {
    /// A sale opening within this is hot (its settings and inventory checked, its pre-queue
    /// ready to admit).
    pub lead: Duration,
    /// An event this long without activity, with nothing left in Redis to look after, leaves.
    pub quiet: Duration,
}

/// How long after its opening a sale stays hot with no activity at all.
const OPENED_WITHIN: Duration = Duration::from_secs(600);

/// How long a mark is kept in the activity index: far longer than any `quiet`.
const MARKS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Marks are re-read with this overlap: two marks in the same millisecond, one read before and
/// one after, are both seen.
const READ_OVERLAP_MS: i64 = 1_000;

#[derive(Debug, Clone)]
struct Hot {
    event: Event,
    /// The event's last activity (Redis's clock, ms); 0 when only the opening window holds it.
    active_ms: i64,
}

/// The hot set, as one worker sees it.
#[derive(Debug)]
pub struct HotSet {
    settings: HotSettings,
    events: HashMap<Uuid, Hot>,
    /// Marks are read from here on (Redis's clock, ms).
    read_from_ms: i64,
    /// Redis's clock at the last read.
    redis_now_ms: i64,
}

/// What a refresh changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub hot: usize,
    pub dropped: usize,
    /// Quiet for long, yet still holding something in Redis: kept, and marked again.
    pub kept_busy: usize,
}

impl HotSet {
    pub fn new(settings: HotSettings) -> Self {
        Self {
            settings,
            events: HashMap::new(),
            // At start, the events active within `quiet` (by this machine's clock, which only
            // decides how far back the first read goes).
            read_from_ms: Utc::now().timestamp_millis() - settings.quiet.as_millis() as i64,
            redis_now_ms: 0,
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.values().map(|h| h.event.clone()).collect()
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.events.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Reads the marks made since the last read and adds the events new to the set (their rows from
/// Postgres, in one query). Cheap enough for every admission tick: one Redis round trip for the
/// marks of the last second or so, and a query only when an event is new.
pub async fn pick_up(
    hot: &std::sync::Mutex<HotSet>,
    db: &PgPool,
    redis: &RedisClient,
) -> anyhow::Result<usize> {
    let from = hot.lock().expect("hot set lock").read_from_ms;
    let (marks, redis_now_ms) = activity::since(redis, from).await?;
    let new: Vec<Uuid> = {
        let mut set = hot.lock().expect("hot set lock");
        set.read_from_ms = redis_now_ms - READ_OVERLAP_MS;
        set.redis_now_ms = redis_now_ms;
        let mut new = Vec::new();
        for (id, at) in marks {
            match set.events.get_mut(&id) {
                Some(known) => known.active_ms = known.active_ms.max(at),
                None => new.push(id),
            }
        }
        new
    };
    if new.is_empty() {
        return Ok(0);
    }
    let rows = event::by_ids(db, &new).await?;
    let mut set = hot.lock().expect("hot set lock");
    let added = rows.len();
    for event in rows {
        set.events.insert(
            event.id,
            Hot {
                event,
                active_ms: redis_now_ms,
            },
        );
    }
    metrics::gauge!("worker_hot_events").set(set.events.len() as f64);
    Ok(added)
}

/// Reads the hot events' rows again (an operator's change), adds the sales opening soon, and
/// drops the events that went quiet with nothing left in Redis to look after.
pub async fn refresh(
    hot: &std::sync::Mutex<HotSet>,
    db: &PgPool,
    redis: &RedisClient,
) -> anyhow::Result<Refreshed> {
    pick_up(hot, db, redis).await?;
    let (ids, settings, redis_now_ms) = {
        let set = hot.lock().expect("hot set lock");
        (
            set.events.keys().copied().collect::<Vec<_>>(),
            set.settings,
            set.redis_now_ms,
        )
    };
    let rows = event::named_or_opening(db, &ids, settings.lead, OPENED_WITHIN).await?;
    let quiet_since = redis_now_ms - settings.quiet.as_millis() as i64;
    let mut refreshed = Refreshed::default();
    let mut next = HashMap::new();
    for (event, opening) in rows {
        let active_ms = hot
            .lock()
            .expect("hot set lock")
            .events
            .get(&event.id)
            .map_or(0, |h| h.active_ms);
        let keep = if opening || active_ms >= quiet_since {
            Some(active_ms)
        } else if busy(redis, event.id).await? {
            refreshed.kept_busy += 1;
            Some(activity::mark(redis, event.id).await?)
        } else {
            None
        };
        match keep {
            Some(active_ms) => {
                next.insert(event.id, Hot { event, active_ms });
            }
            None => refreshed.dropped += 1,
        }
    }
    activity::forget_before(redis, redis_now_ms - MARKS_KEPT.as_millis() as i64).await?;
    let mut set = hot.lock().expect("hot set lock");
    // Marks picked up while this ran: their events stay (their rows come with the next refresh).
    for (id, known) in set.events.drain() {
        if known.active_ms >= redis_now_ms - READ_OVERLAP_MS {
            next.entry(id).or_insert(known);
        }
    }
    set.events = next;
    refreshed.hot = set.events.len();
    metrics::gauge!("worker_hot_events").set(refreshed.hot as f64);
    Ok(refreshed)
}

/// Whether the event still has anything in Redis the worker looks after: people in line
/// (parked included), admitted buyers, holds, pending leaves.
async fn busy(redis: &RedisClient, event_id: Uuid) -> redis::RedisResult<bool> {
    let keys = EventKeys::new(event_id);
    let mut pipe = redis::pipe();
    for key in [
        keys.waiting(),
        keys.parked(),
        keys.admitted(),
        keys.holds(),
        keys.leaving(),
    ] {
        pipe.cmd("ZCARD").arg(key);
    }
    let counts: Vec<i64> = pipe.query_async(&mut redis.clone()).await?;
    Ok(counts.iter().any(|n| *n > 0))
}
