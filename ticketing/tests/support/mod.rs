//! What the Redis-backed tests share: the Redis they run against, and an event's Redis state
//! removed by its hash tag, as a Redis data loss removes it. A hand-kept list of keys silently
//! misses a key added later, and a "loss" that keeps it tests a state Redis never reaches.

use redis::RedisError;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

/// The Redis the tests run against: `REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes every key of `event_id` (`ev:{<id>}:*`), and its mark in the activity set (workers
/// find events there; the test's event exists nowhere else).
pub async fn delete_event_keys(redis: &RedisClient, event_id: Uuid) -> Result<(), RedisError> {
    let mut conn = redis.clone();
    let pattern = format!("ev:{{{event_id}}}:*");
    let mut cursor = 0u64;
    let mut found: Vec<String> = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        found.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    if !found.is_empty() {
        redis::cmd("DEL")
            .arg(&found)
            .query_async::<i64>(&mut conn)
            .await?;
    }
    redis::cmd("ZREM")
        .arg(ticketing::activity::ACTIVITY)
        .arg(event_id.to_string())
        .query_async::<i64>(&mut conn)
        .await?;
    Ok(())
}
