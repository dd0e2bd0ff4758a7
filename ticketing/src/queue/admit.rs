//! The worker's admission step (`lua/admit.lua`): bounded, so no call blocks Redis long whatever
//! the line's length; the worker repeats it within a tick while it says there is more.

use std::sync::LazyLock;

use redis::{RedisResult, Script};
use uuid::Uuid;

use super::{Place, QueueMarks};
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

static ADMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../../lua/admit.lua")));

/// Most entries one step takes off the head (admitted or dropped), and most expired tokens it
/// clears: about a millisecond of Redis.
pub const STEP_BOUND: u32 = 1000;

/// What one admission step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStep {
    pub admitted: i64,
    pub dropped: i64,
    pub expired: i64,
    /// Stopped at its bound with people it may admit now still in line.
    pub more: bool,
    /// The line's marks as Redis has them now.
    pub marks: QueueMarks,
}

pub async fn admit(redis: &RedisClient, event_id: Uuid, bound: u32) -> RedisResult<AdmissionStep> {
    let keys = EventKeys::new(event_id);
    let (admitted, dropped, expired, more, arrivals, admitted_through): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = ADMIT
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
        .arg(bound.max(1))
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(AdmissionStep {
        admitted,
        dropped,
        expired,
        more: more == 1,
        marks: QueueMarks {
            arrivals,
            admitted_through: Place(admitted_through),
        },
    })
}
