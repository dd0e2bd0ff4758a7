//! Bookings and their tickets.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use ticketing::db::event_lock_key;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BookingRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub status: String,
    pub buyer_email: String,
    pub token_jti: Uuid,
    pub idempotency_key: Option<String>,
    pub request_hash: Vec<u8>,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub id: Uuid,
    pub tier_id: Uuid,
    pub number: i32,
}

/// A booking with its tickets.
#[derive(Debug, Clone)]
pub struct StoredBooking {
    pub booking: BookingRow,
    pub tickets: Vec<TicketRow>,
}

/// What a new booking writes.
pub struct NewBooking<'a> {
    pub id: Uuid,
    pub event_id: Uuid,
    pub buyer_email: &'a str,
    pub token_jti: Uuid,
    pub queue_id: Uuid,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a [u8],
    pub total_cents: i64,
    /// The inventory epoch the numbers were reserved under.
    pub epoch: i64,
    /// One entry per ticket: tier id, tier capacity, number.
    pub tickets: Vec<(Uuid, i32, i32)>,
}

/// Holds the event's advisory lock in shared mode until the transaction ends, so an inventory
/// rebuild (which takes it exclusively) waits for this write and sees it.
pub async fn lock_event_shared(conn: &mut PgConnection, event_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(event_lock_key(event_id))
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts the booking and its tickets in one round trip (`book_tickets`, see its migration):
/// under the event's shared advisory lock, and only while the event's inventory epoch is still
/// `epoch`. Returns the created time and ticket ids, or None when fenced out by a rebuild.
pub async fn insert(
    db: &PgPool,
    new: &NewBooking<'_>,
) -> sqlx::Result<Option<(DateTime<Utc>, Vec<TicketRow>)>> {
    let mut tier_ids = Vec::with_capacity(new.tickets.len());
    let mut capacities = Vec::with_capacity(new.tickets.len());
    let mut numbers = Vec::with_capacity(new.tickets.len());
    for (tier, capacity, number) in &new.tickets {
        tier_ids.push(*tier);
        capacities.push(*capacity);
        numbers.push(*number);
    }
    let rows: Vec<(DateTime<Utc>, Uuid, Uuid, i32)> = sqlx::query_as(
        "SELECT * FROM book_tickets($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(event_lock_key(new.event_id))
    .bind(new.id)
    .bind(new.event_id)
    .bind(new.buyer_email)
    .bind(new.token_jti)
    .bind(new.queue_id)
    .bind(new.idempotency_key)
    .bind(new.request_hash)
    .bind(new.total_cents)
    .bind(new.epoch)
    .bind(&tier_ids)
    .bind(&capacities)
    .bind(&numbers)
    .fetch_all(db)
    .await?;
    let Some(created_at) = rows.first().map(|r| r.0) else {
        return Ok(None);
    };
    let tickets = rows
        .into_iter()
        .map(|(_, id, tier_id, number)| TicketRow {
            id,
            tier_id,
            number,
        })
        .collect();
    Ok(Some((created_at, tickets)))
}

const BOOKING_COLUMNS: &str = "id, event_id, status, buyer_email, token_jti, idempotency_key,
    request_hash, total_cents, created_at";

async fn with_tickets(
    db: &PgPool,
    booking: Option<BookingRow>,
) -> sqlx::Result<Option<StoredBooking>> {
    let Some(booking) = booking else {
        return Ok(None);
    };
    let tickets = sqlx::query_as(
        "SELECT id, tier_id, number FROM tickets WHERE booking_id = $1 ORDER BY tier_id, number",
    )
    .bind(booking.id)
    .fetch_all(db)
    .await?;
    Ok(Some(StoredBooking { booking, tickets }))
}

pub async fn find(db: &PgPool, id: Uuid) -> sqlx::Result<Option<StoredBooking>> {
    let booking = sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    with_tickets(db, booking).await
}

pub async fn find_by_token(db: &PgPool, jti: Uuid) -> sqlx::Result<Option<StoredBooking>> {
    let booking = sqlx::query_as(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE token_jti = $1"
    ))
    .bind(jti)
    .fetch_optional(db)
    .await?;
    with_tickets(db, booking).await
}

/// What a cancellation freed.
pub struct Cancelled {
    /// Tier id and number of each ticket that went void.
    pub freed: Vec<(Uuid, i32)>,
    /// The inventory epoch at the time, read under the event's lock.
    pub epoch: i64,
}

/// Cancels a confirmed booking and voids its tickets; None when it was cancelled already.
pub async fn cancel(
    conn: &mut PgConnection,
    id: Uuid,
    event_id: Uuid,
) -> sqlx::Result<Option<Cancelled>> {
    lock_event_shared(conn, event_id).await?;
    let changed = sqlx::query(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = now()
          WHERE id = $1 AND status = 'confirmed'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    let freed: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE tickets SET status = 'void' WHERE booking_id = $1 AND status = 'issued'
         RETURNING tier_id, number",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let epoch: i64 = sqlx::query_scalar("SELECT inventory_epoch FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(Cancelled { freed, epoch }))
}
