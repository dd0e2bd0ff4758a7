//! The entry token of an admitted entry: signed by whichever gateway sees the admission first.

use redis::RedisResult;
use uuid::Uuid;

use super::QueueId;
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

/// Stores the token signed for an admitted entry unless one is there already, and returns the
/// one that stands, so concurrent polls in several gateways hand out a single token.
pub async fn keep_entry_token(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    token: &str,
    ttl_ms: i64,
) -> RedisResult<String> {
    let key = EventKeys::new(event_id).entry_token(queue_id);
    let previous: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms.max(1))
        .arg("GET")
        .query_async(&mut redis.clone())
        .await?;
    Ok(previous.unwrap_or_else(|| token.to_string()))
}
