//! The live numbers of a waiting room.

use std::sync::LazyLock;

use redis::{RedisResult, Script};
use serde::Serialize;
use uuid::Uuid;

use crate::keys::EventKeys;
use crate::lua_reply::malformed;
use crate::redis_client::RedisClient;

static STATS: LazyLock<Script> = crate::lua_script!("queue_stats.lua");

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// In line, pre-queue included.
    pub waiting: i64,
    pub admitted_total: i64,
    pub active: i64,
    pub booked_total: i64,
    pub admitted_last_minute: i64,
    /// Dropped at the head for not polling (left without a word).
    pub dropped_total: i64,
    /// The rate adaptive admission sets now (per minute); 0 when it is off.
    pub effective_per_minute: i64,
    /// The rate once the share of admitted buyers who can still book slows it (per minute;
    /// `lib/conversion.lua`: recent attempts that booked, and the sale's buyers who did without
    /// the tiers now gone); 0 while it does not.
    pub refusal_per_minute: i64,
    /// Buyers without a wish go in only as probes (one every 4 s): the tiers the sale's buyers
    /// took are gone, or nearly every recent attempt was refused. The line still moves for
    /// wishes that can be met, but no wait can be promised to a buyer without one.
    pub probes_only: bool,
    /// How many more admissions the stock on sale can serve, as the sale so far foresees it
    /// (`lib/conversion.lua` `stock_horizon`): what is left of each tier most buyers took, over
    /// what an ended admission took of it, less the admissions still active. None until enough
    /// bookings tell, or with the room off.
    pub stock_horizon: Option<i64>,
}

pub async fn stats(redis: &RedisClient, event_id: Uuid) -> RedisResult<QueueStats> {
    let keys = EventKeys::new(event_id);
    // The figures in `queue_stats.lua`'s order.
    let figures: Vec<i64> = STATS
        .key(keys.waiting())
        .key(keys.admitted())
        .key(keys.stats())
        .key(keys.admissions_per_second())
        .key(keys.queue_config())
        .key(keys.inventory())
        .invoke_async(&mut redis.clone())
        .await?;
    let figure = <[i64; 10]>::try_from(figures).map_err(|_| malformed("queue_stats"))?;
    Ok(QueueStats {
        waiting: figure[0],
        admitted_total: figure[1],
        active: figure[2],
        booked_total: figure[3],
        admitted_last_minute: figure[4],
        dropped_total: figure[5],
        effective_per_minute: figure[6],
        refusal_per_minute: figure[7],
        probes_only: figure[8] == 1,
        stock_horizon: (figure[9] >= 0).then_some(figure[9]),
    })
}
