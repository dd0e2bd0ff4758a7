//! Overdue reservations: a booking process died (or lost Redis) between reserving and writing.
//! If Postgres has the booking, the hold is confirmed; otherwise its numbers go back on sale.
//! Deadlines are set and read by Redis's clock. Bookings never start their Postgres write after
//! half the hold, and a write lasts at most the acquire timeout plus the statement timeout, which
//! the booking service checks fit twice in the hold at start, so a hold past its deadline cannot
//! still become a booking.

use sqlx::PgPool;
use ticketing::inventory::{self, ReleaseMode, Released};
use ticketing::queue::QueueId;
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use uuid::Uuid;

#[tracing::instrument(skip(db, redis), err)]
pub async fn sweep(db: &PgPool, redis: &RedisClient, event_id: Uuid) -> anyhow::Result<u64> {
    let overdue = inventory::overdue_holds(redis, event_id).await?;
    if overdue.is_empty() {
        return Ok(0);
    }
    let snapshot = inventory::snapshot(redis, event_id).await?;
    let Some(epoch) = snapshot.epoch else {
        return Ok(0);
    };
    let codes: Vec<TierCode> =
        sqlx::query_scalar("SELECT code FROM ticket_tiers WHERE event_id = $1")
            .bind(event_id)
            .fetch_all(db)
            .await?;
    let mut released = 0;
    for jti in overdue {
        let booked: Option<QueueId> =
            sqlx::query_scalar("SELECT queue_id FROM bookings WHERE token_jti = $1")
                .bind(jti)
                .fetch_optional(db)
                .await?;
        match booked {
            Some(queue_id) => inventory::confirm(redis, event_id, jti, queue_id).await?,
            None => {
                if inventory::release(
                    redis,
                    event_id,
                    epoch,
                    jti,
                    None,
                    ReleaseMode::Return,
                    &codes,
                )
                .await?
                    == Released::Released
                {
                    released += 1;
                }
            }
        }
    }
    if released > 0 {
        tracing::warn!(%event_id, released, "released reservations that never became bookings");
        metrics::counter!("holds_released_total").increment(released);
    }
    Ok(released)
}
