//! Which events have something going on: a sorted set of event ids by the last time (Redis's
//! clock, ms) anything happened to them (a join, a hold, a cancellation, an operator's change),
//! so the queue-worker and the gateways' gauges look after the events that are selling, not the
//! whole catalog.
//!
//! The event's own scripts cannot write it: every key a script touches lives in the event's
//! Redis Cluster slot, and this index is one key for all events. So it is marked by a call of
//! its own after the script, at most once a second per event and process ([`note`]): an event
//! selling thousands of tickets a second costs one mark a second per process, and its first join
//! or hold is marked at once, so the worker picks it up within one admission tick.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{RedisResult, Script};
use uuid::Uuid;

use crate::redis_client::RedisClient;

/// Sorted set of event id by the last activity, ms on Redis's clock (not hash-tagged: it is
/// read and written on its own).
pub const ACTIVITY: &str = "events:activity";

/// How often one process marks the same event.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// Most events one process remembers having marked; beyond it, those marked over
/// [`MARK_EVERY`] ago are forgotten (they would be marked again anyway).
const REMEMBERED: usize = 10_000;

static MARK: LazyLock<Script> = crate::lua_script!("mark_activity.lua");

static MARKED: LazyLock<Mutex<HashMap<Uuid, Instant>>> = LazyLock::new(Mutex::default);

/// Marks the event active now, unless this process did so less than a second ago. Never fails
/// its caller: what the caller did (a join, a hold) happened whatever becomes of the mark, and
/// must not be answered as an error because of it. A mark that fails is tried again by the next
/// call; meanwhile the worker finds the event by the other ways (its sale's opening window, what
/// it still holds in Redis once hot).
pub async fn note(redis: &RedisClient, event_id: Uuid) {
    let now = Instant::now();
    {
        let mut marked = MARKED.lock().expect("activity marks lock");
        if marked
            .get(&event_id)
            .is_some_and(|at| now.duration_since(*at) < MARK_EVERY)
        {
            return;
        }
        if marked.len() >= REMEMBERED {
            marked.retain(|_, at| now.duration_since(*at) < MARK_EVERY);
        }
        marked.insert(event_id, now);
    }
    if let Err(error) = mark(redis, event_id).await {
        MARKED
            .lock()
            .expect("activity marks lock")
            .remove(&event_id);
        metrics::counter!("activity_marks_failed_total").increment(1);
        tracing::warn!(%event_id, %error, "cannot mark the event active; the next call tries again");
    }
}

/// Marks the event active now. Returns the mark (Redis's clock, ms).
pub async fn mark(redis: &RedisClient, event_id: Uuid) -> RedisResult<i64> {
    MARK.key(ACTIVITY)
        .arg(event_id.to_string())
        .invoke_async(&mut redis.clone())
        .await
}

/// Events marked at or after `since_ms` (Redis's clock), with their marks, and Redis's clock now.
pub async fn since(redis: &RedisClient, since_ms: i64) -> RedisResult<(Vec<(Uuid, i64)>, i64)> {
    let (marks, (seconds, micros)): (Vec<(String, f64)>, (i64, i64)) = redis::pipe()
        .cmd("ZRANGEBYSCORE")
        .arg(ACTIVITY)
        .arg(since_ms)
        .arg("+inf")
        .arg("WITHSCORES")
        .cmd("TIME")
        .query_async(&mut redis.clone())
        .await?;
    let marks = marks
        .into_iter()
        .filter_map(|(id, at)| Some((id.parse().ok()?, at as i64)))
        .collect();
    Ok((marks, seconds * 1000 + micros / 1000))
}

/// Drops marks older than `before_ms`: the index holds the events active lately, not every
/// event that ever sold.
pub async fn forget_before(redis: &RedisClient, before_ms: i64) -> RedisResult<i64> {
    redis::cmd("ZREMRANGEBYSCORE")
        .arg(ACTIVITY)
        .arg("-inf")
        .arg(format!("({before_ms}"))
        .query_async(&mut redis.clone())
        .await
}
