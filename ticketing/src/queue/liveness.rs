//! Signs of life: those that do not come through the entry script (polls a gateway refused for
//! rate limits, for entries whose receipts it verified: `lua/mark_alive.lua`), and what their
//! absence does (entries gone silent leave the count of those ahead: `lua/queue_dormancy.lua`).

use std::sync::LazyLock;

use redis::{RedisResult, Script, Value};
use uuid::Uuid;

use super::Place;
use crate::keys::EventKeys;
use crate::lua_reply::{array, int};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

static MARK: LazyLock<Script> = crate::lua_script!("mark_alive.lua");

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

static DORMANCY: LazyLock<Script> = crate::lua_script!("queue_dormancy.lua");

/// Entries one dormancy call looks at, in line and among the dormant each: about a millisecond
/// of Redis.
pub const DORMANCY_BOUND: usize = 2_000;

/// What one call of [`sweep_dormant`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dormancy {
    /// Where the next call goes on; None once the end of the line was reached.
    pub cursor: Option<Place>,
    /// Entries taken out of the line for want of signs of life.
    pub made_dormant: u64,
    /// Dormant entries the head passed, dropped as abandoned.
    pub dropped: u64,
}

/// Looks at up to [`DORMANCY_BOUND`] entries of the line after `cursor` and takes those with no
/// sign of life in this liveness window nor the one before out of it (`lua/queue_dormancy.lua`);
/// `tiers`: the event's tier codes, whose wish sets a dropped entry leaves.
pub async fn sweep_dormant(
    redis: &RedisClient,
    event_id: Uuid,
    cursor: Option<Place>,
    tiers: &[TierCode],
) -> RedisResult<Dormancy> {
    let keys = EventKeys::new(event_id);
    let mut invocation = DORMANCY.prepare_invoke();
    invocation
        .key(keys.queue_config())
        .key(keys.waiting())
        .key(keys.dormant())
        .key(keys.alive(0))
        .key(keys.alive(1))
        .key(keys.gone())
        .key(keys.wishes())
        .key(keys.stats());
    for code in tiers {
        invocation.key(keys.wanting(code));
    }
    invocation
        .key(keys.deliver_by())
        .arg(cursor.map(|place| place.0.to_string()).unwrap_or_default())
        .arg(DORMANCY_BOUND);
    let reply: Value = invocation.invoke_async(&mut redis.clone()).await?;
    let items = array(&reply);
    let number = |i: usize| items.get(i).and_then(int).unwrap_or_default();
    Ok(Dormancy {
        cursor: items.first().and_then(int).map(Place),
        made_dormant: number(1) as u64,
        dropped: number(2) as u64,
    })
}
