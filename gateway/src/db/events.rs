//! Writing events: a new event with its venue and tiers, and its waiting room retuned. They are
//! read through `ticketing::event`.

use chrono::Utc;
use sqlx::{PgConnection, PgPool, Row};
use ticketing::queue::WaitingRoom;
use uuid::Uuid;

use crate::domain::EventDraft;

/// Inserts a validated draft with its venue (created if new) and tiers; returns the event id.
pub async fn insert(conn: &mut PgConnection, draft: &EventDraft) -> sqlx::Result<Uuid> {
    let venue_id: Uuid = sqlx::query_scalar(
        "INSERT INTO venues (name) VALUES ($1)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(draft.venue_name.trim())
    .fetch_one(&mut *conn)
    .await?;
    let sql = format!(
        "INSERT INTO events (name, venue_id, starts_at, on_sale_at, max_per_booking, {})
         VALUES ($1, $2, $3, $4, $5, {}) RETURNING id",
        ROOM_COLUMNS.join(", "),
        placeholders(6).collect::<Vec<_>>().join(", ")
    );
    let query = sqlx::query(&sql)
        .bind(draft.name.trim())
        .bind(venue_id)
        .bind(draft.starts_at)
        .bind(draft.on_sale_at.unwrap_or_else(Utc::now))
        .bind(draft.max_per_booking.unwrap_or(8));
    let event_id: Uuid = bind_room(query, &draft.waiting_room())
        .fetch_one(&mut *conn)
        .await?
        .try_get("id")?;
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
    let sql = format!(
        "UPDATE events SET {} WHERE id = $1",
        ROOM_COLUMNS
            .iter()
            .zip(placeholders(2))
            .map(|(column, value)| format!("{column} = {value}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let updated = bind_room(sqlx::query(&sql).bind(id), room)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

type RoomQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The waiting room's columns of `events`, in the order [`bind_room`] binds them.
const ROOM_COLUMNS: [&str; 11] = [
    "wr_enabled",
    "admission_per_minute",
    "max_active",
    "paused",
    "token_ttl_s",
    "drain_per_minute",
    "headroom_pct",
    "hold_on_admission",
    "adaptive_target_p95_ms",
    "adaptive_max_503_pct",
    "adaptive_floor_per_minute",
];

/// `$first`, `$first + 1`, … for the room's columns.
fn placeholders(first: usize) -> impl Iterator<Item = String> {
    (first..first + ROOM_COLUMNS.len()).map(|n| format!("${n}"))
}

/// Binds `room`'s settings in the order of [`ROOM_COLUMNS`], after what `query` has bound.
fn bind_room<'q>(query: RoomQuery<'q>, room: &WaitingRoom) -> RoomQuery<'q> {
    let adaptive = room.adaptive;
    query
        .bind(room.enabled)
        .bind(room.admission_per_minute as i32)
        .bind(room.max_active as i32)
        .bind(room.paused)
        .bind(room.token_ttl_s as i32)
        .bind(room.drain_per_minute as i32)
        .bind(room.headroom_pct as i32)
        .bind(room.hold_on_admission)
        .bind(adaptive.map(|a| a.target_p95_ms as i32))
        .bind(adaptive.map(|a| a.max_503_pct as i32))
        .bind(adaptive.map(|a| a.floor_per_minute as i32))
}
