//! Bookings and their tickets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use ticketing::inventory::Epoch;
use ticketing::queue::QueueId;
use ticketing::token::TokenId;
use uuid::Uuid;

use crate::domain::BookingStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BookingRow {
    pub id: Uuid,
    pub event_id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: BookingStatus,
    pub buyer_email: String,
    pub token_jti: TokenId,
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
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub id: Uuid,
    pub event_id: Uuid,
    pub buyer_email: String,
    pub token_jti: TokenId,
    pub queue_id: QueueId,
    pub idempotency_key: Option<String>,
    pub request_hash: Vec<u8>,
    pub total_cents: i64,
    /// The inventory epoch the numbers were reserved under.
    pub epoch: Epoch,
    /// One entry per ticket: tier id, tier capacity, number.
    pub tickets: Vec<(Uuid, i32, i32)>,
}

/// What became of one order of a batch write (see [`insert_batch`]), or of its wait for one.
#[derive(Debug)]
pub enum Written {
    Booked {
        created_at: DateTime<Utc>,
        tickets: Vec<TicketRow>,
    },
    /// The event's inventory epoch moved past the order's: a rebuild ran meanwhile.
    Fenced,
    /// A booking with this token exists already.
    TokenTaken,
    /// A ticket number is sold already or out of range: Redis drifted from Postgres.
    NumberTaken,
    /// Postgres refused the order for another reason (a bug, not a buyer's mistake).
    Refused(String),
    /// The order waited past its write-by time; it was not written.
    TooLate,
    /// The write failed and nothing of it was committed. `unavailable` when it is worth trying
    /// again later (pool exhausted, statement timeout, Postgres restarting).
    Failed { unavailable: bool, error: String },
    /// The connection failed mid-write: the order may or may not be committed.
    Unknown(String),
}

/// One row of `book_orders`: an order's outcome, and one of its tickets when booked.
#[derive(sqlx::FromRow)]
struct OrderRow {
    order_index: i32,
    outcome: String,
    booked_at: Option<DateTime<Utc>>,
    ticket_id: Option<Uuid>,
    ticket_tier: Option<Uuid>,
    ticket_number: Option<i32>,
}

/// Writes a batch of bookings in one round trip and one commit (`book_orders`, see its
/// migration): each under its event's shared advisory lock, only while the event's inventory
/// epoch is still the order's, each accepted or refused on its own. Returns each order's
/// outcome by its index in `orders`.
pub async fn insert_batch(
    db: impl sqlx::PgExecutor<'_>,
    orders: &[&NewBooking],
) -> sqlx::Result<HashMap<usize, Written>> {
    let mut ticket_orders = Vec::new();
    let mut ticket_tiers = Vec::new();
    let mut ticket_capacities = Vec::new();
    let mut ticket_numbers = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        for (tier, capacity, number) in &order.tickets {
            // Postgres arrays are 1-based: `book_orders` numbers the orders from 1.
            ticket_orders.push(i as i32 + 1);
            ticket_tiers.push(*tier);
            ticket_capacities.push(*capacity);
            ticket_numbers.push(*number);
        }
    }
    let column = |f: fn(&NewBooking) -> Uuid| orders.iter().map(|o| f(o)).collect::<Vec<_>>();
    let rows: Vec<OrderRow> = sqlx::query_as(
        "SELECT * FROM book_orders($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(column(|o| o.id))
    .bind(column(|o| o.event_id))
    .bind(
        orders
            .iter()
            .map(|o| o.buyer_email.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(orders.iter().map(|o| o.token_jti).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.queue_id).collect::<Vec<_>>())
    .bind(
        orders
            .iter()
            .map(|o| o.idempotency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        orders
            .iter()
            .map(|o| o.request_hash.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(orders.iter().map(|o| o.total_cents).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.epoch.0).collect::<Vec<_>>())
    .bind(&ticket_orders)
    .bind(&ticket_tiers)
    .bind(&ticket_capacities)
    .bind(&ticket_numbers)
    .fetch_all(db)
    .await?;
    let mut outcomes: HashMap<usize, Written> = HashMap::new();
    for row in rows {
        let index = (row.order_index - 1) as usize;
        let written = match (
            row.outcome.as_str(),
            row.booked_at,
            row.ticket_id,
            row.ticket_tier,
            row.ticket_number,
        ) {
            ("booked", Some(created_at), Some(id), Some(tier_id), Some(number)) => {
                let entry = outcomes.entry(index).or_insert_with(|| Written::Booked {
                    created_at,
                    tickets: Vec::new(),
                });
                if let Written::Booked { tickets, .. } = entry {
                    tickets.push(TicketRow {
                        id,
                        tier_id,
                        number,
                    });
                }
                continue;
            }
            ("fenced", ..) => Written::Fenced,
            ("token_taken", ..) => Written::TokenTaken,
            ("number_taken", ..) => Written::NumberTaken,
            (other, ..) if is_transient_refusal(other) => Written::Failed {
                unavailable: true,
                error: other.to_string(),
            },
            (other, ..) => Written::Refused(other.to_string()),
        };
        outcomes.insert(index, written);
    }
    Ok(outcomes)
}

/// A refusal (`refused:<SQLSTATE> ...`, see `book_orders`) that says nothing about the order
/// itself, only about the moment: a deadlock or serialization failure (class 40), a lock not
/// granted in time (55P03), a statement cancelled (57014). The order's subtransaction was rolled
/// back, so nothing of it is written; the same order may well succeed when tried again.
fn is_transient_refusal(outcome: &str) -> bool {
    let state = outcome.strip_prefix("refused:").unwrap_or_default();
    state.starts_with("40") || state.starts_with("55P03") || state.starts_with("57014")
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

pub async fn find_by_token(db: &PgPool, jti: TokenId) -> sqlx::Result<Option<StoredBooking>> {
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
    pub epoch: Epoch,
}

/// Cancels a confirmed booking and voids its tickets, in one transaction under the event's
/// shared lock; None when it was cancelled already. The caller runs it detached: it begins a
/// transaction, which a dropped future must not cut.
pub async fn cancel(db: &PgPool, id: Uuid, event_id: Uuid) -> sqlx::Result<Option<Cancelled>> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT lock_event($1, false)")
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
    let changed = sqlx::query(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = now()
          WHERE id = $1 AND status = 'confirmed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    let freed: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE tickets SET status = 'void' WHERE booking_id = $1 AND status = 'issued'
         RETURNING tier_id, number",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let epoch = ticketing::event::epoch(&mut *tx, event_id).await?;
    tx.commit().await?;
    Ok(Some(Cancelled { freed, epoch }))
}

#[cfg(test)]
mod tests {
    use super::is_transient_refusal;

    #[test]
    fn refusals_of_the_moment_are_told_apart_from_refusals_of_the_order() {
        for transient in [
            "refused:40P01 deadlock detected",
            "refused:40001 could not serialize access",
            "refused:55P03 canceling statement due to lock timeout",
            "refused:57014 canceling statement due to statement timeout",
        ] {
            assert!(is_transient_refusal(transient), "{transient}");
        }
        for definite in [
            "refused:23503 tickets_tier_fkey",
            "refused:23514 bookings_total_check",
            "refused:",
            "booked",
            "40P01 without its prefix",
        ] {
            assert!(!is_transient_refusal(definite), "{definite}");
        }
    }
}
