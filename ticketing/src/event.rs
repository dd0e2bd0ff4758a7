//! The event, read one way by every service and job: its record (the catalog's row with its
//! venue, waiting room and tier codes), its tiers, its inventory epoch and what is left unsold.
//!
//! Writes stay with whoever owns them: the admin API creates events and tunes their rooms
//! (`gateway/src/db/events.rs`); bookings, cancellations and rebuilds write tickets and move the
//! epoch. Redis's copy of the stock is loaded by one function for every caller,
//! [`crate::rebuild::rebuild_inventory`] (with `When::Missing`, "make sure it is loaded").

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::inventory::Epoch;
use crate::queue::{RoomColumns, WaitingRoom, ROOM_COLUMNS};
use crate::tier::TierCode;

/// An event as Postgres holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    /// The key of the event's advisory lock (`lock_event`).
    pub short_id: i32,
    pub name: String,
    pub venue_id: Uuid,
    pub venue_name: String,
    pub starts_at: DateTime<Utc>,
    /// Entry tokens are refused before this, whoever signed them (set at creation).
    pub on_sale_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub room: RoomColumns,
    pub max_per_booking: i32,
    /// The event's tier codes in their order (tiers never change once the event exists).
    pub tier_codes: Vec<TierCode>,
}

impl Event {
    pub fn waiting_room(&self) -> WaitingRoom {
        WaitingRoom::from_columns(self.room)
    }
}

/// One ticket tier of an event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tier {
    pub id: Uuid,
    pub event_id: Uuid,
    pub code: TierCode,
    pub name: String,
    pub price_cents: i64,
    pub capacity: i32,
}

/// `SELECT <columns> FROM <EVENTS> ...` reads an [`Event`].
fn columns() -> String {
    format!(
        "e.id, e.short_id, e.name, e.venue_id, v.name AS venue_name, e.starts_at, e.on_sale_at,
         {ROOM_COLUMNS}, e.max_per_booking,
         ARRAY(SELECT t.code FROM ticket_tiers t WHERE t.event_id = e.id ORDER BY t.position)
             AS tier_codes"
    )
}

const EVENTS: &str = "events e JOIN venues v ON v.id = e.venue_id";

pub async fn find(db: &PgPool, id: Uuid) -> sqlx::Result<Option<Event>> {
    sqlx::query_as(&format!(
        "SELECT {} FROM {EVENTS} WHERE e.id = $1",
        columns()
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The events named that exist.
pub async fn by_ids(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as(&format!(
        "SELECT {} FROM {EVENTS} WHERE e.id = ANY($1)",
        columns()
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// One page of the catalog by start time.
pub async fn list(db: &PgPool, limit: i64, offset: i64) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as(&format!(
        "SELECT {} FROM {EVENTS} ORDER BY e.starts_at, e.id LIMIT $1 OFFSET $2",
        columns()
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// The events named, and those whose sale opens within `lead` or opened less than `opened` ago,
/// each with whether it is opening: one query, over the primary key and the `on_sale_at` index.
pub async fn named_or_opening(
    db: &PgPool,
    ids: &[Uuid],
    lead: std::time::Duration,
    opened: std::time::Duration,
) -> sqlx::Result<Vec<(Event, bool)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        event: Event,
        opening: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {}, e.on_sale_at BETWEEN now() - $2 AND now() + $3 AS opening
           FROM {EVENTS}
          WHERE e.id = ANY($1) OR e.on_sale_at BETWEEN now() - $2 AND now() + $3",
        columns()
    ))
    .bind(ids)
    .bind(opened)
    .bind(lead)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.event, r.opening)).collect())
}

/// A page of the events that have not started more than a day ago, after `after` in id order.
pub async fn page_after(db: &PgPool, after: Uuid, limit: i64) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as(&format!(
        "SELECT {} FROM {EVENTS}
          WHERE e.id > $1 AND e.starts_at > now() - interval '1 day'
          ORDER BY e.id LIMIT $2",
        columns()
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The tiers of the events named, by event and then in their order.
pub async fn tiers(db: &PgPool, event_ids: &[Uuid]) -> sqlx::Result<Vec<Tier>> {
    sqlx::query_as(
        "SELECT id, event_id, code, name, price_cents, capacity FROM ticket_tiers
          WHERE event_id = ANY($1) ORDER BY event_id, position",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// The event's tier codes in their order (none for an unknown event).
pub async fn tier_codes(db: &PgPool, event_id: Uuid) -> sqlx::Result<Vec<TierCode>> {
    sqlx::query_scalar("SELECT code FROM ticket_tiers WHERE event_id = $1 ORDER BY position")
        .bind(event_id)
        .fetch_all(db)
        .await
}

/// The event's inventory epoch (the fence of reservations; `rebuild`), read with `db`: a pool,
/// or the transaction that holds the event's lock.
pub async fn epoch<'e>(db: impl PgExecutor<'e>, event_id: Uuid) -> sqlx::Result<Epoch> {
    sqlx::query_scalar("SELECT inventory_epoch FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(db)
        .await
        .map(Epoch)
}

/// Tickets still unsold per tier code, counted in Postgres (when Redis lacks the event).
pub async fn unsold(db: &PgPool, event_id: Uuid) -> sqlx::Result<Vec<(TierCode, i64)>> {
    sqlx::query_as(
        "SELECT t.code, t.capacity - count(k.id)
           FROM ticket_tiers t
           LEFT JOIN tickets k ON k.tier_id = t.id AND k.status = 'issued'
          WHERE t.event_id = $1
          GROUP BY t.id",
    )
    .bind(event_id)
    .fetch_all(db)
    .await
}
