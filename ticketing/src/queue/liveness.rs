//! Signs of life that do not come through the entry script: polls a gateway refused (rate
//! limits) for entries whose receipts it verified (`lua/mark_alive.lua`).

use std::sync::LazyLock;

use redis::{RedisResult, Script};
use uuid::Uuid;

use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

static MARK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../lua/mark_alive.lua")));

/// Most arrival numbers one call marks: a few hundred microseconds of Redis.
pub const MARK_BOUND: usize = 500;

/// Marks these arrival numbers alive in the event's current liveness window, in calls of at most
/// [`MARK_BOUND`].
pub async fn mark_alive(redis: &RedisClient, event_id: Uuid, arrivals: &[u64]) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    for chunk in arrivals.chunks(MARK_BOUND) {
        let _: i64 = MARK
            .key(keys.queue_config())
            .key(keys.alive(0))
            .key(keys.alive(1))
            .arg(chunk)
            .invoke_async(&mut redis.clone())
            .await?;
    }
    Ok(())
}
