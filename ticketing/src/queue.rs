//! The waiting room in Redis: one sorted set per event in join order, admission by a token bucket,
//! a pre-queue shuffled at the opening. Each step is one Lua script in `lua/`.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use redis::{RedisResult, Script, Value};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::keys::{EventKeys, ACTIVE_EVENTS};
use crate::lua_reply::{array, int, malformed, text};
use crate::redis_client::RedisClient;

static ENTRY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/queue_entry.lua")));
static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/admit.lua")));
static OPEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/open_sale.lua")));
static STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/queue_stats.lua")));

/// How long without a poll before a waiting entry counts as gone: it is dropped when it reaches
/// the head after one to two windows of silence.
pub const ALIVE_WINDOW_S: u32 = 60;

/// A waiting room's settings, as the admin API reads and writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitingRoom {
    pub enabled: bool,
    #[schema(minimum = 1, maximum = 1000000)]
    pub admission_per_minute: u32,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_active: u32,
    pub paused: bool,
    #[schema(minimum = 30, maximum = 86400)]
    pub token_ttl_s: u32,
}

impl WaitingRoom {
    /// The settings as the `events` row stores them; a non-positive number (which the admin API
    /// refuses, but a hand-edited row might hold) counts as 1.
    pub fn from_columns(
        enabled: bool,
        admission_per_minute: i32,
        max_active: i32,
        paused: bool,
        token_ttl_s: i32,
    ) -> Self {
        let positive = |n: i32| n.max(1) as u32;
        Self {
            enabled,
            admission_per_minute: positive(admission_per_minute),
            max_active: positive(max_active),
            paused,
            token_ttl_s: positive(token_ttl_s),
        }
    }
}

impl Default for WaitingRoom {
    fn default() -> Self {
        Self {
            enabled: false,
            admission_per_minute: 600,
            max_active: 1000,
            paused: false,
            token_ttl_s: 600,
        }
    }
}

/// Queue ids: the first four bytes carry the event's short id (so a poll finds its event without
/// a lookup table), the rest a keyed hash of the visitor, so a visitor gets the same id on every
/// join and nobody can guess another's.
pub fn queue_id(secret: &[u8], event_short_id: i32, event_id: Uuid, visitor_id: &str) -> Uuid {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(event_id.as_bytes());
    mac.update(visitor_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&event_short_id.to_be_bytes());
    bytes[4..].copy_from_slice(&digest[..12]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The event short id a queue id carries.
pub fn event_short_id(queue_id: Uuid) -> i32 {
    let bytes = queue_id.as_bytes();
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Where one entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    NoConfig,
    NotFound,
    PreQueue,
    /// `position` is 1-based.
    Waiting {
        position: u64,
    },
    /// Admitted; `token` is None until the gateway signs one.
    Admitted {
        expires_ms: i64,
        token: Option<String>,
    },
    Expired,
    SoldOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryAction {
    Join,
    Poll,
}

/// Joins the line or reads one's place in it (and counts as a sign of life).
pub async fn entry(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: Uuid,
    action: EntryAction,
) -> RedisResult<Standing> {
    let keys = EventKeys::new(event_id);
    let reply: Value = ENTRY
        .key(keys.queue_config())
        .key(keys.waiting())
        .key(keys.pre_queue())
        .key(keys.sequence())
        .key(keys.alive(0))
        .key(keys.alive(1))
        .key(keys.admitted())
        .key(keys.gone())
        .key(keys.entry_token(queue_id))
        .key(keys.inventory())
        .key(keys.stats())
        .key(keys.admissions_per_second())
        .arg(match action {
            EntryAction::Join => "join",
            EntryAction::Poll => "poll",
        })
        .arg(queue_id.as_bytes().as_slice())
        .invoke_async(&mut redis.clone())
        .await?;
    let items = array(&reply);
    let state = items
        .first()
        .and_then(text)
        .ok_or_else(|| malformed("queue_entry"))?;
    let number = |i: usize| items.get(i).and_then(int).unwrap_or_default();
    Ok(match state.as_str() {
        "no_config" => Standing::NoConfig,
        "not_found" => Standing::NotFound,
        "pre_queue" => Standing::PreQueue,
        "waiting" => Standing::Waiting {
            position: number(1).max(0) as u64,
        },
        "admitted" => Standing::Admitted {
            expires_ms: number(2),
            token: items.get(3).and_then(text),
        },
        "expired" => Standing::Expired,
        "sold_out" => Standing::SoldOut,
        _ => return Err(malformed("queue_entry")),
    })
}

/// Stores the token signed for an admitted entry unless one is there already, and returns the
/// one that stands, so concurrent polls in several gateways hand out a single token.
pub async fn keep_entry_token(
    redis: &RedisClient,
    event_id: Uuid,
    queue_id: Uuid,
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

/// What one admission tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionTick {
    pub admitted: i64,
    pub dropped: i64,
    pub expired: i64,
}

pub async fn admit(redis: &RedisClient, event_id: Uuid) -> RedisResult<AdmissionTick> {
    let keys = EventKeys::new(event_id);
    let (admitted, dropped, expired): (i64, i64, i64) = ADMIT
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
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(AdmissionTick {
        admitted,
        dropped,
        expired,
    })
}

/// Whether the sale has opened in Redis (the pre-queue placed).
pub async fn is_open(redis: &RedisClient, event_id: Uuid) -> RedisResult<bool> {
    let opened: Option<String> = redis::cmd("HGET")
        .arg(EventKeys::new(event_id).queue_config())
        .arg("opened")
        .query_async(&mut redis.clone())
        .await?;
    Ok(opened.as_deref() == Some("1"))
}

/// Places the pre-queue in random order at the opening. Returns how many were placed, or None
/// when there was nothing to do (already open, or not yet time).
pub async fn open_sale(
    redis: &RedisClient,
    event_id: Uuid,
    on_sale_ms: i64,
) -> RedisResult<Option<i64>> {
    use rand::seq::SliceRandom;
    let keys = EventKeys::new(event_id);
    for _ in 0..5 {
        let mut members: Vec<Vec<u8>> = redis::cmd("SMEMBERS")
            .arg(keys.pre_queue())
            .query_async(&mut redis.clone())
            .await?;
        // The draw happens here rather than in Lua, whose random generator Redis seeds the same
        // way every time.
        members.shuffle(&mut rand::thread_rng());
        let mut invocation = OPEN.prepare_invoke();
        invocation
            .key(keys.queue_config())
            .key(keys.pre_queue())
            .key(keys.waiting())
            .key(keys.sequence())
            .key(keys.alive(0))
            .key(keys.alive(1))
            .arg(on_sale_ms);
        for member in &members {
            invocation.arg(member.as_slice());
        }
        let placed: i64 = invocation.invoke_async(&mut redis.clone()).await?;
        match placed {
            -2 => continue,
            n if n >= 0 => return Ok(Some(n)),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Live numbers of a waiting room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub waiting: i64,
    pub admitted_total: i64,
    pub active: i64,
    pub booked_total: i64,
    pub admitted_last_minute: i64,
}

pub async fn stats(redis: &RedisClient, event_id: Uuid) -> RedisResult<QueueStats> {
    let keys = EventKeys::new(event_id);
    let (waiting, admitted_total, active, booked_total, admitted_last_minute): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = STATS
        .key(keys.waiting())
        .key(keys.pre_queue())
        .key(keys.admitted())
        .key(keys.stats())
        .key(keys.admissions_per_second())
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(QueueStats {
        waiting,
        admitted_total,
        active,
        booked_total,
        admitted_last_minute,
    })
}

/// Writes an event's waiting-room settings to Redis, where every gateway and worker reads them on
/// its next request or tick. `opened` is only set when absent: the worker owns the opening.
pub async fn sync_config(
    redis: &RedisClient,
    event_id: Uuid,
    room: &WaitingRoom,
    on_sale_ms: i64,
    now_ms: i64,
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    let flag = |b: bool| if b { "1" } else { "0" };
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(keys.queue_config())
        .arg("enabled")
        .arg(flag(room.enabled))
        .arg("admission_per_minute")
        .arg(room.admission_per_minute)
        .arg("max_active")
        .arg(room.max_active)
        .arg("paused")
        .arg(flag(room.paused))
        .arg("token_ttl_s")
        .arg(room.token_ttl_s)
        .arg("on_sale_ms")
        .arg(on_sale_ms)
        .arg("alive_window_s")
        .arg(ALIVE_WINDOW_S)
        .ignore()
        .cmd("HSETNX")
        .arg(keys.queue_config())
        .arg("opened")
        .arg(flag(now_ms >= on_sale_ms))
        .ignore();
    // The event's keys share one slot; the list of active events lives elsewhere in a cluster, so
    // it is a call of its own.
    pipe.query_async::<()>(&mut redis.clone()).await?;
    redis::cmd("SADD")
        .arg(ACTIVE_EVENTS)
        .arg(event_id.to_string())
        .query_async::<()>(&mut redis.clone())
        .await
}
