//! Reconciliation: Redis must agree with Postgres. Settings and inventory missing from Redis are
//! restored; an inventory epoch that differs from Postgres's is rebuilt; availability that
//! disagrees with Postgres (after accounting for open holds) in two conclusive passes in a row
//! (Redis unchanged while Postgres was read) is drift, repaired by a fenced rebuild and counted.

use std::collections::HashMap;

use sqlx::PgPool;
use ticketing::inventory;
use ticketing::keys::EventKeys;
use ticketing::queue::{self, QueueMarks, Sync};
use ticketing::rebuild::{self, When};
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use ticketing::token::TokenId;
use uuid::Uuid;

use ticketing::event::Event;

/// What the previous pass saw, per event, to tell drift from in-flight work.
#[derive(Default)]
pub struct DriftMemory {
    inventory: HashMap<Uuid, Vec<(TierCode, i64)>>,
    settings: HashMap<Uuid, bool>,
}

impl DriftMemory {
    /// Whether a difference was seen in the event's last pass and awaits a second look.
    pub fn repairing(&self, event_id: Uuid) -> bool {
        self.inventory.contains_key(&event_id)
            || self.settings.get(&event_id).copied().unwrap_or(false)
    }
}

/// The reconciler's round over quiet events (outside the hot set): a bounded page of the
/// catalog per pass, in id order, starting over at the end, so no drift survives a round; an
/// event found differing is looked at again every pass until it is repaired or agrees.
#[derive(Default)]
pub struct QuietRound {
    after: Uuid,
    repairing: HashMap<Uuid, Event>,
}

impl QuietRound {
    /// The quiet events to reconcile this pass: those under repair, then the next `per_pass` of
    /// the catalog that are not `hot`.
    pub async fn next(
        &mut self,
        db: &PgPool,
        per_pass: i64,
        hot: impl Fn(Uuid) -> bool,
    ) -> sqlx::Result<Vec<Event>> {
        let mut events: Vec<Event> = self
            .repairing
            .values()
            .filter(|e| !hot(e.id))
            .cloned()
            .collect();
        if per_pass > 0 {
            let page = ticketing::event::page_after(db, self.after, per_pass).await?;
            self.after = match page.last() {
                Some(last) if page.len() as i64 == per_pass => last.id,
                // The end of the catalog: the next pass starts the round over.
                _ => Uuid::nil(),
            };
            events.extend(
                page.into_iter()
                    .filter(|e| !hot(e.id) && !self.repairing.contains_key(&e.id)),
            );
        }
        Ok(events)
    }

    /// After a quiet event's pass: kept for the next pass while its repair is pending.
    pub fn reconciled(&mut self, event: &Event, memory: &DriftMemory) {
        if memory.repairing(event.id) {
            self.repairing.insert(event.id, event.clone());
        } else {
            self.repairing.remove(&event.id);
        }
    }
}

/// What one pass did to one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repair {
    pub restored_settings: bool,
    pub rebuilt_inventory: bool,
    pub drift_repaired: bool,
}

/// Reconciles a quiet event (outside the hot set): only when Redis holds something of it. An
/// event Redis has neither settings nor inventory of has nothing to drift from; whoever first
/// needs it there (a join, a booking, an availability read) restores it from Postgres, so the
/// round over a large catalog never loads every event into Redis.
pub async fn reconcile_quiet(
    db: &PgPool,
    redis: &RedisClient,
    event: &Event,
    memory: &mut DriftMemory,
) -> anyhow::Result<Repair> {
    let keys = EventKeys::new(event.id);
    let present: i64 = redis::cmd("EXISTS")
        .arg(keys.queue_config())
        .arg(keys.inventory())
        .query_async(&mut redis.clone())
        .await?;
    if present == 0 {
        return Ok(Repair::default());
    }
    reconcile(db, redis, event, memory).await
}

#[tracing::instrument(skip(db, redis, event, memory), fields(event_id = %event.id), err)]
pub async fn reconcile(
    db: &PgPool,
    redis: &RedisClient,
    event: &Event,
    memory: &mut DriftMemory,
) -> anyhow::Result<Repair> {
    let mut repair = Repair::default();
    let mut room = event.waiting_room();
    let mut settings = settings_state(redis, event.id, &room).await?;
    if settings != SettingsState::Same {
        // The worker's list of events is up to a second old: an operator's change (a pause!) may
        // be newer. Putting the list's settings back would undo it, so compare with Postgres as
        // it is now.
        if let Some(fresh) = ticketing::event::find(db, event.id)
            .await?
            .map(|e| e.waiting_room())
        {
            room = fresh;
            settings = settings_state(redis, event.id, &room).await?;
        }
    }
    let differs = settings != SettingsState::Same;
    // One differing pass may be an admin change racing this read; two in a row is drift.
    let seen_before = memory.settings.insert(event.id, differs).unwrap_or(false);
    if settings == SettingsState::Missing || (differs && seen_before) {
        let sync = if settings == SettingsState::Missing {
            Sync::AfterLoss(QueueMarks::load(db, event.id).await?)
        } else {
            Sync::Settings
        };
        queue::sync_config(
            redis,
            event.id,
            &room,
            event.on_sale_at.timestamp_millis(),
            sync,
        )
        .await?;
        memory.settings.insert(event.id, false);
        repair.restored_settings = true;
    }

    let adopted = queue::entry::adopt_legacy(redis, event.id, 1000).await?;
    if adopted > 0 {
        tracing::info!(
            adopted,
            "moved visitors pre-queued by the previous release into the line"
        );
    }

    let snapshot = inventory::snapshot(redis, event.id).await?;
    let pg_epoch = ticketing::event::epoch(db, event.id).await?;
    if snapshot.epoch != Some(pg_epoch) {
        rebuild::rebuild_inventory(db, redis, event.id, When::Missing).await?;
        repair.rebuilt_inventory = true;
        return Ok(repair);
    }

    let holds: Vec<TokenId> = snapshot.holds.keys().copied().collect();
    let issued: Vec<(TierCode, i32, i64)> = sqlx::query_as(
        "SELECT t.code, t.capacity, count(k.id)
           FROM ticket_tiers t
           LEFT JOIN tickets k ON k.tier_id = t.id AND k.status = 'issued'
                AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = k.booking_id AND b.token_jti = ANY($2))
          WHERE t.event_id = $1
          GROUP BY t.id
          ORDER BY t.code",
    )
    .bind(event.id)
    .bind(&holds)
    .fetch_all(db)
    .await?;
    // Redis and Postgres cannot be read at one instant: a booking reserved after the snapshot
    // and committed before the count above would look like drift. Only a pass during which Redis
    // did not change at all (no reservation, confirmation or release) is conclusive; under a
    // steady stream of bookings the comparison waits for a pause, and the dangerous direction (a
    // sold number offered again) is caught at once by Postgres's unique index anyway.
    if inventory::snapshot(redis, event.id).await? != snapshot {
        metrics::counter!("inventory_reconcile_inconclusive_total").increment(1);
        return Ok(repair);
    }
    let held = snapshot.held_per_tier();
    let mut drift: Vec<(TierCode, i64)> = Vec::new();
    for (code, capacity, sold) in issued {
        let in_holds = held.get(&code).copied().unwrap_or(0);
        let expected = i64::from(capacity) - sold - in_holds;
        let actual = snapshot.tiers.get(&code).map(|t| (t.available, t.held));
        // The held count is what polls tell and the sold-out flag rests on: it must agree with
        // the holds themselves as much as availability with Postgres.
        if actual != Some((expected, in_holds)) {
            let (available, counted) = actual.unwrap_or((i64::MIN, 0));
            drift.push((code, available - expected + (counted - in_holds)));
        }
    }
    if drift.is_empty() {
        memory.inventory.remove(&event.id);
        return Ok(repair);
    }
    if memory.inventory.get(&event.id) == Some(&drift) {
        tracing::warn!(?drift, "redis inventory drifted from postgres; rebuilding");
        rebuild::rebuild_inventory(db, redis, event.id, When::Always).await?;
        metrics::counter!("inventory_drift_repaired_total", "event" => event.id.to_string())
            .increment(1);
        memory.inventory.remove(&event.id);
        repair.drift_repaired = true;
    } else {
        memory.inventory.insert(event.id, drift);
    }
    Ok(repair)
}

/// Whether Redis's copy of the settings is missing or differs from Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SettingsState {
    Same,
    Differ,
    Missing,
}

async fn settings_state(
    redis: &RedisClient,
    event_id: Uuid,
    room: &queue::WaitingRoom,
) -> redis::RedisResult<SettingsState> {
    let expected = room.redis_fields();
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(EventKeys::new(event_id).queue_config())
        .arg(expected.iter().map(|(name, _)| *name).collect::<Vec<_>>())
        .query_async(&mut redis.clone())
        .await?;
    if fields.iter().all(Option::is_none) {
        return Ok(SettingsState::Missing);
    }
    let same = fields
        .iter()
        .zip(expected.iter())
        .all(|(a, (_, b))| a.as_deref() == Some(b.as_str()));
    Ok(if same {
        SettingsState::Same
    } else {
        SettingsState::Differ
    })
}
