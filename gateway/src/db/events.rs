//! Events, their venue and tiers.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use ticketing::queue::{RoomColumns, WaitingRoom};
use ticketing::tier::TierCode;
use uuid::Uuid;

use crate::domain::EventDraft;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub short_id: i32,
    pub name: String,
    pub venue_id: Uuid,
    pub venue_name: String,
    pub starts_at: DateTime<Utc>,
    pub on_sale_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub room: RoomColumns,
    pub max_per_booking: i32,
    /// The event's tier codes in their order (tiers never change once the event exists).
    pub tier_codes: Vec<TierCode>,
}

impl EventRow {
    pub fn waiting_room(&self) -> WaitingRoom {
        WaitingRoom::from_columns(self.room)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TierRow {
    pub event_id: Uuid,
    pub code: TierCode,
    pub name: String,
    pub price_cents: i64,
    pub capacity: i32,
}

const EVENT_COLUMNS: &str =
    "e.id, e.short_id, e.name, e.venue_id, v.name AS venue_name, e.starts_at,
    e.on_sale_at, e.wr_enabled, e.admission_per_minute, e.max_active, e.paused, e.token_ttl_s,
    e.drain_per_minute, e.headroom_pct, e.hold_on_admission, e.adaptive_target_p95_ms,
    e.adaptive_max_503_pct, e.adaptive_floor_per_minute, e.max_per_booking,
    ARRAY(SELECT t.code FROM ticket_tiers t WHERE t.event_id = e.id ORDER BY t.position)
        AS tier_codes";

/// One page of events by start time; one extra row tells whether another page follows.
pub async fn list(db: &PgPool, limit: i64, offset: i64) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e JOIN venues v ON v.id = e.venue_id
          ORDER BY e.starts_at, e.id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub async fn find(db: &PgPool, id: Uuid) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn tiers(db: &PgPool, event_ids: &[Uuid]) -> sqlx::Result<Vec<TierRow>> {
    sqlx::query_as(
        "SELECT event_id, code, name, price_cents, capacity FROM ticket_tiers
          WHERE event_id = ANY($1) ORDER BY event_id, position",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// Tickets still unsold per tier code, counted in Postgres (used when Redis lacks the event).
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

/// Inserts a validated draft with its venue (created if new) and tiers; returns the event id.
pub async fn insert(conn: &mut PgConnection, draft: &EventDraft) -> sqlx::Result<Uuid> {
    let venue_id: Uuid = sqlx::query_scalar(
        "INSERT INTO venues (name) VALUES ($1)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(draft.venue_name.trim())
    .fetch_one(&mut *conn)
    .await?;
    let room = draft.waiting_room();
    let event_id: Uuid = sqlx::query_scalar(
        "INSERT INTO events (name, venue_id, starts_at, on_sale_at, wr_enabled, admission_per_minute,
                             max_active, paused, token_ttl_s, max_per_booking, drain_per_minute,
                             headroom_pct, hold_on_admission, adaptive_target_p95_ms,
                             adaptive_max_503_pct, adaptive_floor_per_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         RETURNING id",
    )
    .bind(draft.name.trim())
    .bind(venue_id)
    .bind(draft.starts_at)
    .bind(draft.on_sale_at.unwrap_or_else(Utc::now))
    .bind(room.enabled)
    .bind(room.admission_per_minute as i32)
    .bind(room.max_active as i32)
    .bind(room.paused)
    .bind(room.token_ttl_s as i32)
    .bind(draft.max_per_booking.unwrap_or(8))
    .bind(room.drain_per_minute as i32)
    .bind(room.headroom_pct as i32)
    .bind(room.hold_on_admission)
    .bind(room.adaptive.map(|a| a.target_p95_ms as i32))
    .bind(room.adaptive.map(|a| a.max_503_pct as i32))
    .bind(room.adaptive.map(|a| a.floor_per_minute as i32))
    .fetch_one(&mut *conn)
    .await?;
    for (position, tier) in draft.tiers.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event_id)
        .bind(&tier.code)
        .bind(tier.name.trim())
        .bind(tier.price_cents)
        .bind(tier.capacity)
        .bind(position as i32)
        .execute(&mut *conn)
        .await?;
    }
    Ok(event_id)
}

/// Whether an event of this name already exists at this venue (the seed is idempotent by it).
pub async fn exists_named(db: &PgPool, name: &str, venue_name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events e JOIN venues v ON v.id = e.venue_id
                         WHERE e.name = $1 AND v.name = $2)",
    )
    .bind(name)
    .bind(venue_name)
    .fetch_one(db)
    .await
}

pub async fn update_waiting_room(db: &PgPool, id: Uuid, room: &WaitingRoom) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE events SET wr_enabled = $2, admission_per_minute = $3, max_active = $4, paused = $5,
                           token_ttl_s = $6, drain_per_minute = $7, headroom_pct = $8,
                           hold_on_admission = $9, adaptive_target_p95_ms = $10,
                           adaptive_max_503_pct = $11, adaptive_floor_per_minute = $12
          WHERE id = $1",
    )
    .bind(id)
    .bind(room.enabled)
    .bind(room.admission_per_minute as i32)
    .bind(room.max_active as i32)
    .bind(room.paused)
    .bind(room.token_ttl_s as i32)
    .bind(room.drain_per_minute as i32)
    .bind(room.headroom_pct as i32)
    .bind(room.hold_on_admission)
    .bind(room.adaptive.map(|a| a.target_p95_ms as i32))
    .bind(room.adaptive.map(|a| a.max_503_pct as i32))
    .bind(room.adaptive.map(|a| a.floor_per_minute as i32))
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}
