//! Overdue reservations: a booking process died (or lost Redis) between reserving and writing,
//! or a retry that continued a hold failed and left it here (its earlier attempt may have been
//! writing it). If Postgres has the token's booking, the hold is confirmed with the booking's
//! numbers; otherwise its numbers go back on sale. Deadlines are set and read by Redis's clock.
//!
//! The sweeper never trusts time alone to know that no write is left:
//! - Postgres is asked under the event's lock taken **exclusively**, as a rebuild takes it, so
//!   every booking write of the event that is still running (or committing: a WAL flush, a
//!   synchronous standby's acknowledgement, which no statement timeout counts) has ended and is
//!   seen. The wait is bounded ([`LOCK_WAIT`]); a lock not granted in time means a write may
//!   still be committing, and the holds stay for the next pass (unknown, not overdue).
//! - the release itself re-checks the deadline in the same script (`release.lua`): a retry that
//!   re-armed the hold after it was listed owns it again.
//!
//! Admission holds (hold on admission) are never written to Postgres: released without asking.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use ticketing::inventory::{
    self, Confirmation, Confirmed, Numbers, Overdue, ReleaseMode, Released,
};
use ticketing::queue::QueueId;
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use ticketing::token::TokenId;
use uuid::Uuid;

/// Longest the sweeper waits for the event's in-flight booking writes to end. Bookings of the
/// event queue behind the sweeper meanwhile, so it is short; a write still running after it is
/// treated as possibly committing.
const LOCK_WAIT: Duration = Duration::from_millis(250);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Holds whose numbers went back on sale.
    pub released: u64,
    /// Holds confirmed (their token has a booking).
    pub confirmed: u64,
    /// Holds left for a later pass: re-armed by a retry, or a write of the event may still be
    /// committing.
    pub kept: u64,
}

#[tracing::instrument(skip(db, redis), err)]
pub async fn sweep(db: &PgPool, redis: &RedisClient, event_id: Uuid) -> anyhow::Result<Swept> {
    let overdue = inventory::overdue_holds(redis, event_id).await?;
    settle(db, redis, event_id, overdue).await
}

/// Settles the holds a listing found overdue: each is released, confirmed or kept.
pub async fn settle(
    db: &PgPool,
    redis: &RedisClient,
    event_id: Uuid,
    overdue: Overdue,
) -> anyhow::Result<Swept> {
    let mut swept = Swept::default();
    let Some(epoch) = overdue.epoch.filter(|_| !overdue.is_empty()) else {
        return Ok(swept);
    };
    let codes = ticketing::event::tier_codes(db, event_id).await?;
    for id in &overdue.admission {
        let released = inventory::release(
            redis,
            event_id,
            epoch,
            *id,
            None,
            ReleaseMode::Return,
            &codes,
        )
        .await?;
        swept.count_release(released);
    }
    if !overdue.reservations.is_empty() {
        // The transaction only holds the lock: it runs to its end in a task of its own, so a
        // cancelled pass never leaves it open.
        let (db, redis) = (db.clone(), redis.clone());
        let reservations = overdue.reservations;
        let settled = ticketing::detached::finish(async move {
            settle_reservations(&db, &redis, event_id, epoch, &reservations, &codes).await
        })
        .await?;
        swept.released += settled.released;
        swept.confirmed += settled.confirmed;
        swept.kept += settled.kept;
    }
    if swept.released > 0 {
        tracing::warn!(%event_id, released = swept.released, "released reservations that never became bookings");
        metrics::counter!("holds_released_total").increment(swept.released);
    }
    if swept.kept > 0 {
        metrics::counter!("holds_kept_by_sweeper_total").increment(swept.kept);
    }
    Ok(swept)
}

impl Swept {
    fn count_release(&mut self, released: Released) {
        match released {
            Released::Released => self.released += 1,
            Released::Rearmed => self.kept += 1,
            Released::NoHold | Released::Stale | Released::Superseded => {}
        }
    }
}

async fn settle_reservations(
    db: &PgPool,
    redis: &RedisClient,
    event_id: Uuid,
    epoch: inventory::Epoch,
    reservations: &[TokenId],
    codes: &[TierCode],
) -> anyhow::Result<Swept> {
    let mut swept = Swept::default();
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL lock_timeout = {}",
        LOCK_WAIT.as_millis()
    ))
    .execute(&mut *tx)
    .await?;
    let locked = sqlx::query_scalar::<_, bool>("SELECT lock_event($1, true)")
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await;
    match locked {
        Ok(true) => {}
        // The event is gone from Postgres: nothing can be written for it.
        Ok(false) => {}
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            // A booking write of this event is still running or committing: it may be one of
            // these holds'. Next pass.
            swept.kept = reservations.len() as u64;
            return Ok(swept);
        }
        Err(e) => return Err(e.into()),
    }
    let mut booked = booked_numbers(&mut tx, reservations).await?;
    let mut confirmations = Vec::with_capacity(booked.len());
    for &jti in reservations {
        match booked.remove(&jti) {
            Some((queue_id, booked)) => confirmations.push(Confirmation {
                jti,
                queue_id,
                booked,
            }),
            None => {
                let released = inventory::release(
                    redis,
                    event_id,
                    epoch,
                    jti,
                    None,
                    ReleaseMode::Return,
                    codes,
                )
                .await?;
                swept.count_release(released);
            }
        }
    }
    // The bookings found, many to a script call as the booking service's confirmer sends them
    // (after a crash every hold of a sale may be here), in chunks that keep each call short.
    for chunk in confirmations.chunks(inventory::MOST_CONFIRMATIONS_PER_CALL) {
        for confirmed in inventory::confirm_all(redis, event_id, codes, chunk).await? {
            match confirmed {
                Confirmed::Sold => swept.confirmed += 1,
                Confirmed::Returned => swept.released += 1,
                Confirmed::NoHold => {}
            }
        }
    }
    tx.commit().await?;
    Ok(swept)
}

/// The bookings of these tokens, with their numbers per tier code.
async fn booked_numbers(
    tx: &mut sqlx::PgConnection,
    tokens: &[TokenId],
) -> sqlx::Result<HashMap<TokenId, (QueueId, Numbers)>> {
    let rows: Vec<(TokenId, QueueId, Option<TierCode>, Option<i32>)> = sqlx::query_as(
        "SELECT b.token_jti, b.queue_id, t.code, k.number
           FROM bookings b
           LEFT JOIN tickets k ON k.booking_id = b.id
           LEFT JOIN ticket_tiers t ON t.id = k.tier_id
          WHERE b.token_jti = ANY($1)",
    )
    .bind(tokens)
    .fetch_all(&mut *tx)
    .await?;
    let mut booked: HashMap<TokenId, (QueueId, Numbers)> = HashMap::new();
    for (jti, queue_id, code, number) in rows {
        let (_, numbers) = booked
            .entry(jti)
            .or_insert_with(|| (queue_id, Numbers::new()));
        if let (Some(code), Some(number)) = (code, number) {
            numbers.entry(code).or_default().push(number);
        }
    }
    Ok(booked)
}
