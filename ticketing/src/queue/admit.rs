//! The worker's admission step (`lua/admit.lua`): bounded, so no call blocks Redis long whatever
//! the line's length; the worker repeats it within a tick while it says there is more.

use std::sync::LazyLock;

use redis::{RedisResult, Script, Value};
use uuid::Uuid;

use super::{Place, QueueId, QueueMarks};
use crate::keys::EventKeys;
use crate::lua_reply::{array, int, malformed};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

static ADMIT: LazyLock<Script> = crate::lua_script!(
    "admit.lua",
    "admission/reclaim.lua",
    "admission/pace.lua",
    "admission/gate.lua",
    "admission/record.lua",
);
static GIVE_BACK: LazyLock<Script> = crate::lua_script!("admission_give_back.lua");

/// Most entries one step looks at off the head (admitted, dropped, parked, or passed waiting for
/// stock), and most expired tokens it clears: about a millisecond of Redis.
pub const STEP_BOUND: u32 = 1000;

/// What one admission step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStep {
    pub admitted: i64,
    pub dropped: i64,
    pub expired: i64,
    /// Taken off the head because their wish cannot be met (they keep the place).
    pub parked: i64,
    /// Stopped at its bound with people it may admit now still in line.
    pub more: bool,
    /// The line's marks as Redis has them now.
    pub marks: QueueMarks,
}

/// One admission step. `tiers`: the event's tier codes, whose stock gates admission.
pub async fn admit(
    redis: &RedisClient,
    event_id: Uuid,
    bound: u32,
    tiers: &[TierCode],
) -> RedisResult<AdmissionStep> {
    let keys = EventKeys::new(event_id);
    let mut invocation = ADMIT.prepare_invoke();
    invocation
        .key(keys.queue_config())
        .key(keys.waiting())
        .key(keys.admitted())
        .key(keys.admission_bucket())
        .key(keys.stats())
        .key(keys.admissions_per_second())
        .key(keys.gone())
        .key(keys.alive(0))
        .key(keys.alive(1))
        .key(keys.inventory())
        .key(keys.sequence())
        .key(keys.wishes())
        .key(keys.parked())
        .key(keys.admitted_demand())
        .key(keys.demand())
        .key(keys.holds())
        .key(keys.hold_numbers())
        .arg(bound.max(1))
        .arg(keys.notices())
        .arg(super::DELIVERY_WINDOW_MS)
        .arg(super::DELIVERY_GRACE_MS)
        .arg(super::FRESH_UNDELIVERED_MS)
        .arg(super::FRESH_AFTER_DELIVERY_MS)
        .arg(super::LONGEST_POLL_MS);
    for code in tiers {
        invocation
            .key(keys.wanting(code))
            .key(keys.free_numbers(code))
            .arg(code);
    }
    invocation
        .key(keys.demand_fresh())
        .key(keys.demand_delivered())
        .key(keys.dormant())
        .key(keys.admitted_seen())
        .key(keys.deliver_by());
    let reply: Value = invocation.invoke_async(&mut redis.clone()).await?;
    let n: Vec<i64> = array(&reply).iter().filter_map(int).collect();
    let [admitted, dropped, expired, more, arrivals, admitted_through, parked] = n[..] else {
        return Err(malformed("admit"));
    };
    Ok(AdmissionStep {
        admitted,
        dropped,
        expired,
        parked,
        more: more == 1,
        marks: QueueMarks {
            arrivals,
            admitted_through: Place(admitted_through),
        },
    })
}

/// A buyer refused for stock gives back its admission slot and the demand it counted
/// (`lua/admission_give_back.lua`); its entry token stays valid for what is left. False when it
/// held no slot (given back already, booked, left or expired).
pub async fn give_back_admission(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
) -> RedisResult<bool> {
    let keys = EventKeys::new(event_id);
    let given: i64 = GIVE_BACK
        .key(keys.admitted())
        .key(keys.admitted_demand())
        .key(keys.demand())
        .key(keys.stats())
        .arg(queue_id)
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(given == 1)
}
