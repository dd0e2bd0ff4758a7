//! An event's ticket inventory in Redis: reserve all tiers of a booking or none, confirm, release,
//! restock cancelled tickets, and read it back. Each operation is one Lua script in `lua/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use redis::{RedisResult, Script, Value};
use serde::Serialize;
use uuid::Uuid;

use crate::keys::EventKeys;
use crate::lua_reply::{array, int, malformed, pairs, text};
use crate::redis_client::RedisClient;

static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/reserve.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/release.lua")));
static CONFIRM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/confirm.lua")));
static RESTOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/restock.lua")));
static SNAPSHOT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/inventory_snapshot.lua")));
pub(crate) static LOAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/load_inventory.lua")));

/// Ticket numbers per tier code.
pub type Numbers = BTreeMap<String, Vec<i32>>;

/// A tier that could not supply the requested quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Shortfall {
    pub tier: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every tier reserved; the numbers are held until confirmed or released.
    Held {
        epoch: String,
        numbers: Numbers,
    },
    /// The event's inventory is not in Redis; rebuild it from Postgres first.
    NotLoaded,
    /// This token has reserved before.
    TokenUsed,
    UnknownTier(String),
    /// A tier was listed twice in one request.
    DuplicateTier(String),
    /// Nothing was reserved: these tiers fell short. `sold_out` when no tier of the event had
    /// anything left.
    Short {
        shortfall: Vec<Shortfall>,
        sold_out: bool,
    },
}

/// Reserves `tiers` (code, quantity ≥ 1) for the token `jti`, holding them until `deadline_ms`.
pub async fn reserve(
    redis: &RedisClient,
    event_id: Uuid,
    jti: Uuid,
    deadline_ms: i64,
    tiers: &[(String, u32)],
) -> RedisResult<Reservation> {
    let keys = EventKeys::new(event_id);
    let mut invocation = RESERVE.prepare_invoke();
    invocation
        .key(keys.inventory())
        .key(keys.used_tokens())
        .key(keys.holds())
        .key(keys.hold_numbers())
        .arg(jti.to_string())
        .arg(deadline_ms);
    for (code, quantity) in tiers {
        invocation
            .key(keys.free_numbers(code))
            .arg(code)
            .arg(*quantity);
    }
    let reply: Value = invocation.invoke_async(&mut redis.clone()).await?;
    let items = array(&reply);
    let tag = items
        .first()
        .and_then(text)
        .ok_or_else(|| malformed("reserve"))?;
    Ok(match tag.as_str() {
        "ok" => {
            let epoch = items
                .get(1)
                .and_then(text)
                .ok_or_else(|| malformed("reserve"))?;
            let mut numbers = Numbers::new();
            for pair in items[2..].chunks(2) {
                let code = pair
                    .first()
                    .and_then(text)
                    .ok_or_else(|| malformed("reserve"))?;
                let list = pair
                    .get(1)
                    .map(array)
                    .unwrap_or_default()
                    .iter()
                    .map(|n| int(n).and_then(|n| i32::try_from(n).ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| malformed("reserve"))?;
                numbers.insert(code, list);
            }
            Reservation::Held { epoch, numbers }
        }
        "not_loaded" => Reservation::NotLoaded,
        "used" => Reservation::TokenUsed,
        "unknown_tier" => Reservation::UnknownTier(items.get(1).and_then(text).unwrap_or_default()),
        "duplicate_tier" => {
            Reservation::DuplicateTier(items.get(1).and_then(text).unwrap_or_default())
        }
        "short" | "sold_out" => Reservation::Short {
            shortfall: items[1..]
                .chunks(3)
                .filter_map(|c| {
                    Some(Shortfall {
                        tier: text(c.first()?)?,
                        requested: int(c.get(1)?)?,
                        available: int(c.get(2)?)?,
                    })
                })
                .collect(),
            sold_out: tag == "sold_out",
        },
        _ => return Err(malformed("reserve")),
    })
}

/// What to do with the numbers of a released hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseMode {
    /// Back on sale.
    Return,
    /// Dropped: Postgres may hold them already; the reconciler rebuilds the event.
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Released,
    /// No such hold (already confirmed or released).
    NoHold,
    /// The inventory was rebuilt since the reservation; nothing to undo.
    Stale,
}

/// Ends the hold `jti` made under `epoch`. `all_tiers` lists every tier code of the event.
pub async fn release(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: &str,
    jti: &str,
    mode: ReleaseMode,
    all_tiers: &[String],
) -> RedisResult<Released> {
    let keys = EventKeys::new(event_id);
    let mut invocation = RELEASE.prepare_invoke();
    invocation
        .key(keys.inventory())
        .key(keys.used_tokens())
        .key(keys.holds())
        .key(keys.hold_numbers())
        .arg(epoch)
        .arg(jti)
        .arg(match mode {
            ReleaseMode::Return => "return",
            ReleaseMode::Discard => "discard",
        });
    for code in all_tiers {
        invocation.key(keys.free_numbers(code)).arg(code);
    }
    let reply: String = invocation.invoke_async(&mut redis.clone()).await?;
    Ok(match reply.as_str() {
        "released" => Released::Released,
        "none" => Released::NoHold,
        _ => Released::Stale,
    })
}

/// The hold `jti` became a booking: its numbers stay sold and the buyer's admission ends.
pub async fn confirm(
    redis: &RedisClient,
    event_id: Uuid,
    jti: Uuid,
    queue_id: Uuid,
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    let _: i64 = CONFIRM
        .key(keys.holds())
        .key(keys.hold_numbers())
        .key(keys.admitted())
        .key(keys.stats())
        .arg(jti.to_string())
        .arg(queue_id.as_bytes().as_slice())
        .invoke_async(&mut redis.clone())
        .await?;
    Ok(())
}

/// Puts a cancelled booking's numbers back on sale, unless the inventory was rebuilt since
/// `epoch`. Returns how many numbers went back (None when stale).
pub async fn restock(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: &str,
    numbers: &Numbers,
) -> RedisResult<Option<i64>> {
    let keys = EventKeys::new(event_id);
    let mut invocation = RESTOCK.prepare_invoke();
    invocation.key(keys.inventory()).arg(epoch);
    for (code, list) in numbers {
        let csv = list
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        invocation.key(keys.free_numbers(code)).arg(code).arg(csv);
    }
    let back: i64 = invocation.invoke_async(&mut redis.clone()).await?;
    Ok((back >= 0).then_some(back))
}

/// One tier as Redis sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStock {
    pub capacity: i64,
    pub next: i64,
    pub available: i64,
}

/// A consistent read of an event's inventory and its open holds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// None when the event's inventory is not in Redis.
    pub epoch: Option<String>,
    pub tiers: HashMap<String, TierStock>,
    /// Open holds: reservation id → numbers.
    pub holds: HashMap<String, Numbers>,
}

impl Snapshot {
    /// Numbers held (reserved, not yet confirmed) per tier.
    pub fn held_per_tier(&self) -> HashMap<String, i64> {
        let mut held = HashMap::new();
        for numbers in self.holds.values() {
            for (code, list) in numbers {
                *held.entry(code.clone()).or_insert(0) += list.len() as i64;
            }
        }
        held
    }
}

pub async fn snapshot(redis: &RedisClient, event_id: Uuid) -> RedisResult<Snapshot> {
    let keys = EventKeys::new(event_id);
    let reply: Value = SNAPSHOT
        .key(keys.inventory())
        .key(keys.hold_numbers())
        .invoke_async(&mut redis.clone())
        .await?;
    let parts = array(&reply);
    let mut snapshot = Snapshot::default();
    for (field, value) in parts.first().map(pairs).unwrap_or_default() {
        if field == "epoch" {
            snapshot.epoch = Some(value);
            continue;
        }
        let Some((code, what)) = field.rsplit_once(':') else {
            continue;
        };
        let n: i64 = value.parse().unwrap_or_default();
        let tier = snapshot.tiers.entry(code.to_string()).or_default();
        match what {
            "cap" => tier.capacity = n,
            "next" => tier.next = n,
            "avail" => tier.available = n,
            _ => {}
        }
    }
    for (jti, held) in parts.get(1).map(pairs).unwrap_or_default() {
        snapshot.holds.insert(jti, parse_held(&held));
    }
    Ok(snapshot)
}

/// Parses `VIP=1,2;GA=7`.
pub fn parse_held(held: &str) -> Numbers {
    held.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(code, list)| {
            let numbers = list.split(',').filter_map(|n| n.parse().ok()).collect();
            (code.to_string(), numbers)
        })
        .collect()
}

/// Live availability per tier, or None when the event's inventory is not in Redis.
pub async fn availability(
    redis: &RedisClient,
    event_id: Uuid,
) -> RedisResult<Option<HashMap<String, i64>>> {
    let keys = EventKeys::new(event_id);
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.inventory())
        .query_async(&mut redis.clone())
        .await?;
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        fields
            .iter()
            .filter_map(|(field, value)| {
                let code = field.strip_suffix(":avail")?;
                Some((code.to_string(), value.parse().ok()?))
            })
            .collect(),
    ))
}

/// Reservation ids whose hold deadline passed.
pub async fn overdue_holds(
    redis: &RedisClient,
    event_id: Uuid,
    now_ms: i64,
) -> RedisResult<Vec<String>> {
    redis::cmd("ZRANGEBYSCORE")
        .arg(EventKeys::new(event_id).holds())
        .arg("-inf")
        .arg(now_ms)
        .arg("LIMIT")
        .arg(0)
        .arg(500)
        .query_async(&mut redis.clone())
        .await
}
