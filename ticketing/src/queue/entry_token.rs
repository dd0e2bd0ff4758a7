//! The entry token of an admitted entry: signed by whichever gateway delivers it first, and
//! living `token_ttl_s` from that first delivery (`lua/deliver_token.lua`), not from the
//! admission: a buyer whose tab slept through the admission still gets the whole time to book.

use std::sync::LazyLock;

use redis::{RedisResult, Script};
use uuid::Uuid;

use super::QueueId;
use crate::inventory::admission_hold_id;
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

static DELIVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../lua/deliver_token.lua")));

/// How long past `token_ttl_s` an admission keeps its slot for a buyer who has not yet received
/// the token: a background tab polls at most every minute when the browser throttles it, and a
/// phone wakes from sleep within this. The token then lives
/// `min(first delivery + token_ttl_s, admission + token_ttl_s + DELIVERY_GRACE_MS)`.
pub const DELIVERY_GRACE_MS: u64 = 120_000;

/// Starts the token's time at its first delivery; returns when it expires (ms, Redis's clock),
/// or `None` when the admission ended meanwhile (expired, or booked by another tab).
pub async fn deliver_entry_token(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
) -> RedisResult<Option<i64>> {
    let keys = EventKeys::new(event_id);
    let expires: i64 = DELIVER
        .key(keys.admitted())
        .key(keys.queue_config())
        .key(keys.holds())
        .key(keys.entry_token(queue_id))
        .arg(queue_id)
        .arg(admission_hold_id(queue_id))
        .invoke_async(&mut redis.clone())
        .await?;
    Ok((expires > 0).then_some(expires))
}

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
