//! Joining the line and polling one's place in it: one script (`lua/queue_entry.lua`) for both,
//! since a poll is a join that may not create an entry.

use std::sync::LazyLock;

use redis::{RedisResult, Script, ScriptInvocation, Value};
use uuid::Uuid;

use super::{AdmittedAs, Generation, Line, Place, QueueId, Receipt};
use crate::inventory::admission_hold_id;
use crate::keys::EventKeys;
use crate::lua_reply::{array, int, malformed, text};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

static ENTRY: LazyLock<Script> = crate::lua_script!("queue_entry.lua");
static LEAVE: LazyLock<Script> = crate::lua_script!("queue_leave.lua");

/// Where one entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Redis has no settings for the event: it lost them, or never had them.
    NoConfig,
    NotFound,
    /// The event gave every arrival number it has.
    Full,
    /// In line before the opening; where is not told until then.
    PreQueue {
        place: Place,
        generation: Generation,
        line: Line,
    },
    /// `position` is 1-based. A buyer whose wish cannot be met (see `Line::shortfall`) waits
    /// here too, keeping the place, but is not admitted until the wish changes.
    Waiting {
        position: u64,
        place: Place,
        generation: Generation,
        line: Line,
    },
    /// Admitted; `token` is None until the gateway signs one.
    Admitted {
        expires_ms: i64,
        token: Option<String>,
        admitted_as: Option<AdmittedAs>,
    },
    Expired,
    SoldOut,
}

/// Joins the line (or finds one's entry), drawing `lot` as the place in the pre-queue's lottery
/// should the join come before the opening. `tiers`: the event's tier codes, in order.
pub async fn join(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    lot: u32,
    tiers: &[TierCode],
) -> RedisResult<Standing> {
    let mut invocation = invocation(event_id, queue_id, tiers);
    invocation.arg("join").arg(queue_id).arg(lot).arg("");
    let standing = run(redis, invocation, tiers).await?;
    // A line to admit: the worker looks after the event from its next tick.
    crate::activity::note(redis, event_id).await;
    Ok(standing)
}

/// Reads one's place (a sign of life). With a verified `receipt` of this entry, an entry Redis
/// lost is put back at the receipt's place, once.
pub async fn poll(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    receipt: Option<&Receipt>,
    tiers: &[TierCode],
) -> RedisResult<Standing> {
    let mut invocation = invocation(event_id, queue_id, tiers);
    invocation.arg("poll").arg(queue_id);
    match receipt.filter(|r| r.queue_id == queue_id && r.event_id == event_id) {
        Some(receipt) => invocation.arg(receipt.place).arg(receipt.generation),
        None => invocation.arg("").arg(""),
    };
    run(redis, invocation, tiers).await
}

/// When a leave takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// At once (the buyer pressed "leave").
    Now,
    /// After this many ms, unless the entry polls meanwhile: a page closing says this, and a
    /// reload's first poll cancels it.
    After(u64),
    /// If a leave asked with a grace is still asked and due (the worker's pass).
    IfDue,
}

/// The buyer leaves the line, or gives back an admission it will not use: its place, wish and
/// any admission slot are free at once, and its admission hold (if any) goes back on sale at the
/// sweeper's next pass. False when there was nothing to leave (for `After`: nothing to leave
/// later).
pub async fn leave(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: QueueId,
    when: Leaving,
    tiers: &[TierCode],
) -> RedisResult<bool> {
    let keys = EventKeys::new(event_id);
    let (mode, grace_ms) = match when {
        Leaving::Now => ("now", 0),
        Leaving::After(ms) => ("later", ms),
        Leaving::IfDue => ("due", 0),
    };
    let mut invocation = LEAVE.prepare_invoke();
    invocation
        .key(keys.waiting())
        .key(keys.admitted())
        .key(keys.gone())
        .key(keys.entry_token(queue_id))
        .key(keys.stats())
        .key(keys.parked())
        .key(keys.wishes())
        .key(keys.admitted_demand())
        .key(keys.demand())
        .key(keys.leaving())
        .key(keys.holds())
        .key(keys.queue_config())
        .key(keys.dormant())
        .arg(queue_id)
        .arg(mode)
        .arg(grace_ms)
        .arg(admission_hold_id(queue_id));
    for code in tiers {
        invocation.key(keys.wanting(code)).arg(code);
    }
    invocation.key(keys.deliver_by());
    let left: i64 = invocation.invoke_async(&mut redis.clone()).await?;
    Ok(left == 1)
}

/// Queue ids whose leave-after-grace is due, at most `bound`.
pub async fn due_to_leave(
    redis: &RedisClient,
    event_id: Uuid,
    now_ms: i64,
    bound: usize,
) -> RedisResult<Vec<QueueId>> {
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
        .arg(EventKeys::new(event_id).leaving())
        .arg("-inf")
        .arg(now_ms)
        .arg("LIMIT")
        .arg(0)
        .arg(bound)
        .query_async(&mut redis.clone())
        .await?;
    Ok(members
        .iter()
        .filter_map(|m| Uuid::from_slice(m).ok().map(QueueId))
        .collect())
}

/// Moves visitors pre-queued by the release before place lots (a set, shuffled at the opening)
/// into the line, each through the join script with a lot of its own, at most `bound` per call.
/// Returns how many it moved; run until 0 after an upgrade, so nobody pre-queued then is lost.
pub async fn adopt_legacy(redis: &RedisClient, event_id: Uuid, bound: usize) -> RedisResult<usize> {
    let legacy = EventKeys::new(event_id).legacy_pre_queue();
    let members: Vec<Vec<u8>> = redis::cmd("SRANDMEMBER")
        .arg(&legacy)
        .arg(bound)
        .query_async(&mut redis.clone())
        .await?;
    // Joined first, removed after: a failure half-way leaves the rest for the next pass, and a
    // second join of the same id finds its place.
    for member in &members {
        if let Ok(id) = Uuid::from_slice(member) {
            join(redis, event_id, QueueId(id), super::place::draw_lot(), &[]).await?;
        }
        redis::cmd("SREM")
            .arg(&legacy)
            .arg(member.as_slice())
            .query_async::<i64>(&mut redis.clone())
            .await?;
    }
    Ok(members.len())
}

fn invocation(event_id: Uuid, queue_id: QueueId, tiers: &[TierCode]) -> ScriptInvocation<'static> {
    let keys = EventKeys::new(event_id);
    let mut invocation = ENTRY.prepare_invoke();
    invocation
        .key(keys.queue_config())
        .key(keys.waiting())
        .key(keys.sequence())
        .key(keys.alive(0))
        .key(keys.alive(1))
        .key(keys.admitted())
        .key(keys.gone())
        .key(keys.entry_token(queue_id))
        .key(keys.inventory())
        .key(keys.stats())
        .key(keys.admissions_per_second())
        .key(keys.restored())
        .key(keys.wishes())
        .key(keys.parked())
        .key(keys.admitted_demand())
        .key(keys.leaving())
        .key(keys.dormant())
        .key(keys.admitted_seen());
    for code in tiers {
        invocation.key(keys.wanting(code));
    }
    invocation
}

async fn run(
    redis: &RedisClient,
    mut invocation: ScriptInvocation<'_>,
    tiers: &[TierCode],
) -> RedisResult<Standing> {
    for code in tiers {
        invocation.arg(code);
    }
    let reply: Value = invocation.invoke_async(&mut redis.clone()).await?;
    let items = array(&reply);
    let state = items
        .first()
        .and_then(text)
        .ok_or_else(|| malformed("queue_entry"))?;
    let number = |i: usize| items.get(i).and_then(int).unwrap_or_default();
    let place = Place(number(4));
    let generation = || {
        items
            .get(5)
            .and_then(text)
            .and_then(|g| g.parse().ok())
            .map(Generation)
            .ok_or_else(|| malformed("queue_entry"))
    };
    let line = || Line::from_reply(items.get(6), items.get(7));
    Ok(match state.as_str() {
        "no_config" => Standing::NoConfig,
        "not_found" => Standing::NotFound,
        "full" => Standing::Full,
        "pre_queue" => Standing::PreQueue {
            place,
            generation: generation()?,
            line: line(),
        },
        "waiting" => Standing::Waiting {
            position: number(1).max(0) as u64,
            place,
            generation: generation()?,
            line: line(),
        },
        "admitted" => Standing::Admitted {
            expires_ms: number(2),
            token: items.get(3).and_then(text),
            admitted_as: items
                .get(8)
                .and_then(text)
                .and_then(|t| AdmittedAs::parse(&t)),
        },
        "expired" => Standing::Expired,
        "sold_out" => Standing::SoldOut,
        _ => return Err(malformed("queue_entry")),
    })
}
