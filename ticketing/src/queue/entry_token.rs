//! The entry token of an admitted entry: signed by whichever gateway delivers it first, and
//! living `token_ttl_s` from that first delivery (`lua/deliver_token.lua`), not from the
//! admission. An admission nobody comes for within two of the poll intervals its entry was told
//! near the head ([`note_cadence`]), or within [`DELIVERY_WINDOW_MS`] when it never polled
//! there, is reclaimed, and a
//! delivered one whose page went silent for [`PAGE_GONE_MS`] gives back its slot
//! (`lua/admit.lua`); [`page_alive`] is the booking page's sign of life.

use std::sync::LazyLock;

use redis::{RedisResult, Script};
use uuid::Uuid;

use super::QueueId;
use crate::inventory::admission_hold_id;
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

static DELIVER: LazyLock<Script> = crate::lua_script!("deliver_token.lua");

/// How long an admission waits for its token's first delivery before it is reclaimed (slot,
/// demand and any hold): two of the page's longest poll intervals and a few seconds. A page with
/// a stream gets it at once (the gateway delivers on the worker's notice), a polling one within
/// an interval. Delivered, the token lives `token_ttl_s` from that moment.
pub const DELIVERY_WINDOW_MS: u64 = 2 * super::LONGEST_POLL_MS + 5_000;

/// What a page polling at the cadence it was told is given on top of two intervals to come for
/// its token (a slow network, a busy phone).
pub const DELIVERY_GRACE_MS: u64 = 5_000;

static CADENCE: LazyLock<Script> = crate::lua_script!("queue_cadence.lua");

/// An entry near the head was told to poll again in `poll_after_ms`: were it admitted, its token
/// is to be delivered within two such intervals and [`DELIVERY_GRACE_MS`], or the admission is
/// reclaimed then (`lua/admit.lua`), not after [`DELIVERY_WINDOW_MS`].
pub async fn note_cadence(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    poll_after_ms: u64,
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    let _: i64 = CADENCE
        .key(keys.deliver_by())
        .arg(queue_id)
        .arg((2 * poll_after_ms + DELIVERY_GRACE_MS).min(DELIVERY_WINDOW_MS))
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(())
}

/// How long a delivered admission's page may show no sign of life (poll, stream check,
/// `POST /api/queue/{id}/alive`) before its slot and counted demand go to the next in line; its
/// token stays valid until it expires.
pub const PAGE_GONE_MS: u64 = 30_000;

/// How long the demand of an admission whose entry never polled near the head stays fresh
/// while undelivered (`lua/lib/demand.lua`). A page that is there polls near the head every
/// second or two and has its cadence noted (its demand is fresh until it is due); one that never
/// did has most likely closed while waiting (a rehearsal's 20 % leave), or the line outran its
/// poll, and then it counts in full again when it comes. The grace a noted page gets.
pub const FRESH_UNDELIVERED_MS: u64 = DELIVERY_GRACE_MS;

/// How long a delivered admission's demand stays fresh (`lua/lib/demand.lua`) until the sale's
/// own bookings tell how long its buyers take (the time 95 % of them booked within). Past it,
/// unbooked, the demand counts against the stock only at the share of such admissions that
/// still came to book, which each sale learns; the slot is kept until the page is gone.
pub const FRESH_AFTER_DELIVERY_MS: u64 = 15_000;

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
        .key(keys.admitted_seen())
        .key(keys.admitted_demand())
        .key(keys.demand())
        .key(keys.demand_fresh())
        .key(keys.stats())
        .key(keys.demand_delivered())
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

static ALIVE: LazyLock<Script> = crate::lua_script!("queue_alive.lua");

/// The booking page of an admitted entry is still open (`POST /api/queue/{id}/alive`): false
/// when the entry holds no admission slot (never admitted, given back, booked or expired).
pub async fn page_alive(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
) -> RedisResult<bool> {
    let keys = EventKeys::new(event_id);
    let alive: i64 = ALIVE
        .key(keys.admitted())
        .key(keys.admitted_seen())
        .arg(queue_id)
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(alive == 1)
}
