//! Rebuilding an event's Redis inventory from Postgres, the source of truth.
//!
//! Fencing: bookings write to Postgres holding the event's advisory lock in shared mode and only
//! if the event's `inventory_epoch` still equals the epoch their reservation was made under. A
//! rebuild takes the lock exclusively (so it waits for in-flight booking writes and sees them),
//! sets a new epoch from a sequence (so any reservation made against the old Redis state can no
//! longer commit, and no epoch is ever handed out twice, even by a rebuild that failed after Redis
//! took it), reads every issued ticket, and loads Redis before it commits. No number can be
//! handed out twice.
//!
//! The lock is keyed inside SQL by the event's short id (`lock_event`): an id Postgres
//! does not have takes no lock, and two events never share one.

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::inventory::{self, Epoch, TierLoad};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

/// Whether to rebuild when Redis already holds this event at Postgres's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Only when Redis lacks the event or holds another epoch (another process may have just
    /// rebuilt it: then nothing is done).
    Missing,
    /// Only while Redis still holds the inventory of this epoch, in which drift was found: a
    /// wave of orders that each met the same drift rebuilds once, not once per order (every
    /// rebuild fences every order in flight and drops every hold).
    DriftedAt(Epoch),
    /// Always (an operator's or a test's repair).
    Always,
}

/// Rebuilds the inventory of `event_id`. Returns the epoch Redis now holds, or None when the
/// event does not exist. Runs to completion in a task of its own: a caller that goes away
/// cannot leave the transaction, the lock or the Redis load half done.
pub async fn rebuild_inventory(
    db: &PgPool,
    redis: &RedisClient,
    event_id: Uuid,
    when: When,
) -> anyhow::Result<Option<Epoch>> {
    let (db, redis) = (db.clone(), redis.clone());
    crate::detached::finish(async move { rebuild(&db, &redis, event_id, when).await }).await
}

#[tracing::instrument(skip(db, redis), err)]
async fn rebuild(
    db: &PgPool,
    redis: &RedisClient,
    event_id: Uuid,
    when: When,
) -> anyhow::Result<Option<Epoch>> {
    let mut tx = db.begin().await?;
    let exists: bool = sqlx::query_scalar("SELECT lock_event($1, true)")
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(None);
    }
    let current = crate::event::epoch(&mut *tx, event_id).await?;
    match when {
        When::Missing => {
            let in_redis = inventory::redis_epoch(redis, event_id).await?;
            if in_redis == Some(current) {
                return Ok(in_redis);
            }
        }
        When::DriftedAt(drifted) => {
            // Read under the exclusive lock: a rebuild that replaced the drifted epoch has
            // committed, or not begun.
            let in_redis = inventory::redis_epoch(redis, event_id).await?;
            if in_redis != Some(drifted) {
                metrics::counter!("inventory_rebuilds_skipped_total").increment(1);
                return Ok(in_redis);
            }
        }
        When::Always => {}
    }
    let epoch: i64 = sqlx::query_scalar(
        "UPDATE events SET inventory_epoch = nextval('inventory_epoch_seq') WHERE id = $1
         RETURNING inventory_epoch",
    )
    .bind(event_id)
    .fetch_one(&mut *tx)
    .await?;
    let epoch = Epoch(epoch);
    let tiers: Vec<(TierCode, i32, Vec<i32>)> = sqlx::query_as(
        "SELECT t.code, t.capacity,
                COALESCE(array_agg(k.number) FILTER (WHERE k.number IS NOT NULL), '{}')
           FROM ticket_tiers t
           LEFT JOIN tickets k ON k.tier_id = t.id AND k.status = 'issued'
          WHERE t.event_id = $1
          GROUP BY t.id
          ORDER BY t.position",
    )
    .bind(event_id)
    .fetch_all(&mut *tx)
    .await?;
    let tiers: Vec<TierLoad> = tiers
        .into_iter()
        .map(|(code, capacity, issued)| TierLoad {
            code,
            capacity,
            issued: issued.into_iter().collect(),
        })
        .collect();
    inventory::load(redis, event_id, epoch, &tiers)
        .await
        .context("loading the inventory into redis")?;
    // If this commit fails, Postgres keeps the old epoch while Redis has the new one: every
    // reservation made under the new one is fenced out, and the next rebuild takes yet another.
    tx.commit().await?;
    metrics::counter!("inventory_rebuilds_total").increment(1);
    tracing::info!(%event_id, %epoch, "inventory rebuilt from postgres");
    Ok(Some(epoch))
}
