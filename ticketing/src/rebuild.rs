//! Rebuilding an event's Redis inventory from Postgres, the source of truth.
//!
//! Fencing: bookings write to Postgres holding the event's advisory lock in shared mode and only
//! if the event's `inventory_epoch` still equals the epoch their reservation was made under. A
//! rebuild takes the lock exclusively (so it waits for in-flight booking writes and sees them),
//! bumps the epoch (so any reservation made against the old Redis state can no longer commit),
//! reads every issued ticket and loads Redis before it commits. No number can be handed out twice.

use std::collections::BTreeSet;

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::event_lock_key;
use crate::inventory::{self, LOAD};
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

/// Whether to rebuild when Redis already holds this event at Postgres's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Only when Redis lacks the event or holds another epoch (another process may have just
    /// rebuilt it: then nothing is done).
    Missing,
    /// Always (drift was found).
    Always,
}

/// Rebuilds the inventory of `event_id`. Returns the epoch Redis now holds, or None when the
/// event does not exist.
#[tracing::instrument(skip(db, redis), err)]
pub async fn rebuild_inventory(
    db: &PgPool,
    redis: &RedisClient,
    event_id: Uuid,
    when: When,
) -> anyhow::Result<Option<String>> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(event_lock_key(event_id))
        .execute(&mut *tx)
        .await?;
    let Some(current): Option<i64> =
        sqlx::query_scalar("SELECT inventory_epoch FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    if when == When::Missing {
        let in_redis = inventory::snapshot(redis, event_id).await?.epoch;
        if in_redis.as_deref() == Some(current.to_string().as_str()) {
            return Ok(in_redis);
        }
    }
    let epoch: i64 = sqlx::query_scalar(
        "UPDATE events SET inventory_epoch = inventory_epoch + 1 WHERE id = $1 RETURNING inventory_epoch",
    )
    .bind(event_id)
    .fetch_one(&mut *tx)
    .await?;
    let tiers: Vec<(String, i32, Vec<i32>)> = sqlx::query_as(
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

    let keys = EventKeys::new(event_id);
    let mut load = LOAD.prepare_invoke();
    load.key(keys.inventory())
        .key(keys.holds())
        .key(keys.hold_numbers())
        .key(keys.used_tokens())
        .arg(epoch);
    for (code, capacity, issued) in &tiers {
        let issued: BTreeSet<i32> = issued.iter().copied().collect();
        let next = issued.last().copied().unwrap_or(0);
        let free = (1..=next)
            .filter(|n| !issued.contains(n))
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",");
        load.key(keys.free_numbers(code))
            .arg(code)
            .arg(capacity)
            .arg(next)
            .arg(issued.len())
            .arg(free);
    }
    let _: i64 = load
        .invoke_async(&mut redis.clone())
        .await
        .context("loading the inventory into redis")?;
    tx.commit().await?;
    metrics::counter!("inventory_rebuilds_total").increment(1);
    tracing::info!(%event_id, epoch, "inventory rebuilt from postgres");
    Ok(Some(epoch.to_string()))
}
