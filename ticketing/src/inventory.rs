//! An event's ticket inventory in Redis: reserve all tiers of a booking or none, confirm, release,
//! restock cancelled tickets, and read it back. Each operation is one Lua script in `lua/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use redis::{RedisResult, Script, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity;
use crate::keys::EventKeys;
use crate::lua_reply::{array, int, malformed, pairs, text};
use crate::queue::QueueId;
use crate::redis_client::RedisClient;
use crate::tier::TierCode;
use crate::token::TokenId;

static RESERVE: LazyLock<Script> = crate::lua_script!("reserve.lua");
static RELEASE: LazyLock<Script> = crate::lua_script!("release.lua");
static CONFIRM: LazyLock<Script> = crate::lua_script!("confirm.lua");
static RESTOCK: LazyLock<Script> = crate::lua_script!("restock.lua");
static SNAPSHOT: LazyLock<Script> = crate::lua_script!("inventory_snapshot.lua");
static SWITCH: LazyLock<Script> = crate::lua_script!("switch_inventory.lua");
static OVERDUE: LazyLock<Script> = crate::lua_script!("overdue_holds.lua");

/// Ticket numbers per tier code.
pub type Numbers = BTreeMap<TierCode, Vec<i32>>;

/// An event's inventory epoch: `events.inventory_epoch` (bigint) in Postgres, the `epoch` field
/// of the inventory hash in Redis. Every rebuild takes a new one from a sequence; a booking
/// commits only under the epoch its numbers were reserved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub i64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Epoch {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Epoch)
    }
}

impl redis::ToRedisArgs for Epoch {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        self.0.write_redis_args(out)
    }
}

/// How many free numbers one staging command adds: each Redis call stays short.
pub const LOAD_CHUNK: usize = 1000;

/// How long a staged inventory survives a rebuild that died before switching it live.
const STAGE_TTL_S: i64 = 600;

/// A tier that could not supply the requested quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shortfall {
    pub tier: TierCode,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every tier reserved; the numbers are held until confirmed or released. `continued` when
    /// the token held them already for the same request (a retry), and the hold was re-armed.
    Held {
        epoch: Epoch,
        numbers: Numbers,
        continued: bool,
    },
    /// The event's inventory is not in Redis; rebuild it from Postgres first.
    NotLoaded,
    /// This token has reserved before and its hold is over (booked, or released).
    TokenUsed,
    /// This token holds numbers for a different request.
    OtherRequest,
    /// The buyer's admission hold (made under this epoch) is for other tiers or quantities
    /// than this request: release it, then reserve without the claim.
    ClaimDiffers(Epoch),
    UnknownTier(TierCode),
    /// A tier was listed twice in one request.
    DuplicateTier(TierCode),
    /// Nothing was reserved: these tiers fell short. `sold_out` when no tier of the event had
    /// anything left.
    Short {
        shortfall: Vec<Shortfall>,
        sold_out: bool,
    },
}

/// Who a hold is for: the request (its fingerprint) and the attempt that made or last continued
/// it, the only one (besides the sweeper) that may release it. `claim`: the buyer's queue id,
/// whose admission hold (hold on admission) this reservation takes over when it is for the same
/// tiers and quantities.
#[derive(Debug, Clone, Copy)]
pub struct HoldFor<'a> {
    pub fingerprint: &'a str,
    pub attempt: &'a str,
    pub claim: Option<QueueId>,
}

/// The id of the hold admission makes for a queue id: the queue id in the form reservation ids
/// (token `jti`s) have, which no token ever takes (ids are random), so the sweeper finds no
/// booking under it and returns the numbers once the deadline (the entry token's expiry) passes.
pub fn admission_hold_id(queue_id: QueueId) -> TokenId {
    TokenId(queue_id.0)
}

/// Reserves `tiers` (code, quantity ≥ 1) for the token `jti`, holding them for `hold_ttl_ms` by
/// Redis's clock. A token that holds numbers already for the same fingerprint continues that
/// hold, which then belongs to this attempt.
pub async fn reserve(
    redis: &RedisClient,
    event_id: Uuid,
    jti: TokenId,
    hold_ttl_ms: u64,
    holder: HoldFor<'_>,
    tiers: &[(TierCode, u32)],
) -> RedisResult<Reservation> {
    let keys = EventKeys::new(event_id);
    let mut invocation = RESERVE.prepare_invoke();
    hold_keys(&mut invocation, &keys);
    invocation
        .arg(jti)
        .arg(hold_ttl_ms)
        .arg(holder.fingerprint)
        .arg(holder.attempt)
        .arg(
            // An empty argument, not none: the script's argument positions are fixed.
            holder
                .claim
                .map_or_else(String::new, |q| admission_hold_id(q).to_string()),
        );
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
        "held" | "continued" => {
            let epoch = items
                .get(1)
                .and_then(text)
                .and_then(|e| e.parse().ok())
                .ok_or_else(|| malformed("reserve"))?;
            let mut numbers = Numbers::new();
            for pair in items[2..].chunks(2) {
                let code = pair
                    .first()
                    .and_then(code)
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
            // A hold to sweep if it is never written: the worker looks after the event.
            activity::note(redis, event_id).await;
            Reservation::Held {
                epoch,
                numbers,
                continued: tag == "continued",
            }
        }
        "not_loaded" => Reservation::NotLoaded,
        "used" => Reservation::TokenUsed,
        "other_request" => Reservation::OtherRequest,
        "claim_differs" => Reservation::ClaimDiffers(
            items
                .get(1)
                .and_then(text)
                .and_then(|e| e.parse().ok())
                .ok_or_else(|| malformed("reserve"))?,
        ),
        "unknown_tier" => Reservation::UnknownTier(
            items
                .get(1)
                .and_then(code)
                .ok_or_else(|| malformed("reserve"))?,
        ),
        "duplicate_tier" => Reservation::DuplicateTier(
            items
                .get(1)
                .and_then(code)
                .ok_or_else(|| malformed("reserve"))?,
        ),
        "short" | "sold_out" => Reservation::Short {
            shortfall: items[1..]
                .chunks(3)
                .filter_map(|c| {
                    Some(Shortfall {
                        tier: code(c.first()?)?,
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

/// A tier code in a script's reply.
fn code(value: &Value) -> Option<TierCode> {
    TierCode::parse(&text(value)?)
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
    /// A later attempt with the same token continued the hold: it is that attempt's to end.
    Superseded,
    /// The sweeper's release of a hold whose deadline was re-armed since it was listed (a retry
    /// continued it): the retry's write may commit, so it stays.
    Rearmed,
}

/// The attempt every admission hold (hold on admission, see `admit.lua`) is made by: a checkout
/// that finds the buyer booking other tiers releases that hold as this attempt.
pub const ADMISSION_ATTEMPT: &str = "admission";

/// Ends the hold `jti` made under `epoch`, if `attempt` still owns it. None is the sweeper: it
/// releases whoever's hold, but only while its deadline is past by Redis's clock, checked in
/// the same script (a retry may have re-armed it since the sweeper listed it). `all_tiers`
/// lists every tier code of the event.
pub async fn release(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: Epoch,
    jti: TokenId,
    attempt: Option<&str>,
    mode: ReleaseMode,
    all_tiers: &[TierCode],
) -> RedisResult<Released> {
    let keys = EventKeys::new(event_id);
    let mut invocation = RELEASE.prepare_invoke();
    hold_keys(&mut invocation, &keys);
    invocation
        .arg(epoch)
        .arg(jti)
        .arg(match mode {
            ReleaseMode::Return => "return",
            ReleaseMode::Discard => "discard",
        })
        .arg(attempt.unwrap_or_default())
        .arg(keys.notices());
    for code in all_tiers {
        invocation.key(keys.free_numbers(code)).arg(code);
    }
    let reply: String = invocation.invoke_async(&mut redis.clone()).await?;
    Ok(match reply.as_str() {
        "released" => Released::Released,
        "none" => Released::NoHold,
        "superseded" => Released::Superseded,
        "rearmed" => Released::Rearmed,
        _ => Released::Stale,
    })
}

/// The keys a script that makes or ends a hold takes first, in this order: the inventory, the
/// tokens that reserved, the holds' deadlines and their numbers (`reserve.lua`, `release.lua`).
fn hold_keys(invocation: &mut redis::ScriptInvocation<'_>, keys: &EventKeys) {
    invocation
        .key(keys.inventory())
        .key(keys.used_tokens())
        .key(keys.holds())
        .key(keys.hold_numbers());
}

/// What confirming a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The hold held the booking's numbers: they stay sold, the booking is counted.
    Sold,
    /// The hold held other numbers than the booking's (the token reserved afresh after its
    /// booking was written): they went back on sale.
    Returned,
    /// No such hold (confirmed by another process, released, or dropped by a rebuild).
    NoHold,
}

/// A booking Postgres has, whose hold is to end: its token `jti`, the buyer's queue id and the
/// numbers as Postgres has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub jti: TokenId,
    pub queue_id: QueueId,
    pub booked: Numbers,
}

/// The token `jti` has a booking in Postgres with the numbers `booked`: its hold ends, and the
/// buyer's admission with it. The hold's numbers stay sold only if they are `booked`; any other
/// numbers go back on sale (they were never sold). `all_tiers` lists every tier code of the
/// event.
pub async fn confirm(
    redis: &RedisClient,
    event_id: Uuid,
    jti: TokenId,
    queue_id: QueueId,
    booked: &Numbers,
    all_tiers: &[TierCode],
) -> RedisResult<Confirmed> {
    let one = Confirmation {
        jti,
        queue_id,
        booked: booked.clone(),
    };
    let outcomes = confirm_all(redis, event_id, all_tiers, std::slice::from_ref(&one)).await?;
    outcomes
        .first()
        .copied()
        .ok_or_else(|| malformed("confirm"))
}

/// Most bookings one [`confirm_all`] call should carry: a script blocks Redis while it runs, so
/// a sweep after a crash (every hold of a sale at once) goes in calls of this size.
pub const MOST_CONFIRMATIONS_PER_CALL: usize = 256;

/// [`confirm`] for every booking of `event_id` in `bookings`, in one script call (a writer's
/// batch commits many at once, and a call costs Redis more than one confirmation's work); the
/// outcomes in the same order.
pub async fn confirm_all(
    redis: &RedisClient,
    event_id: Uuid,
    all_tiers: &[TierCode],
    bookings: &[Confirmation],
) -> RedisResult<Vec<Confirmed>> {
    let keys = EventKeys::new(event_id);
    let mut invocation = CONFIRM.prepare_invoke();
    invocation
        .key(keys.holds())
        .key(keys.hold_numbers())
        .key(keys.admitted())
        .key(keys.stats())
        .key(keys.inventory())
        .key(keys.admitted_demand())
        .key(keys.demand())
        .key(keys.demand_delivered())
        .arg(keys.notices())
        .arg(all_tiers.len());
    for code in all_tiers {
        invocation.key(keys.free_numbers(code)).arg(code);
    }
    for booking in bookings {
        invocation
            .arg(booking.jti)
            .arg(booking.queue_id)
            .arg(numbers_value(&booking.booked));
    }
    let reply: Vec<i64> = invocation.invoke_async(&mut redis.clone()).await?;
    if reply.len() != bookings.len() {
        return Err(malformed("confirm"));
    }
    Ok(reply
        .into_iter()
        .map(|outcome| match outcome {
            1 => Confirmed::Sold,
            2 => Confirmed::Returned,
            _ => Confirmed::NoHold,
        })
        .collect())
}

/// Numbers in the form a hold keeps them, `VIP=1,2;GA=7` (the inverse of [`parse_held`]).
pub fn numbers_value(numbers: &Numbers) -> String {
    numbers
        .iter()
        .map(|(code, list)| {
            let list: Vec<String> = list.iter().map(i32::to_string).collect();
            format!("{code}={}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Puts a cancelled booking's numbers back on sale, unless the inventory was rebuilt since
/// `epoch`. Returns how many numbers went back (None when stale).
pub async fn restock(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: Epoch,
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
    // Tickets back on sale (a line may be parked waiting for them): the worker looks after it.
    activity::note(redis, event_id).await;
    Ok((back >= 0).then_some(back))
}

/// One tier as Redis sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStock {
    pub capacity: i64,
    pub next: i64,
    pub available: i64,
    /// Numbers in open holds, as the scripts count them.
    pub held: i64,
}

/// A consistent read of an event's inventory and its open holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// None when the event's inventory is not in Redis.
    pub epoch: Option<Epoch>,
    pub tiers: HashMap<TierCode, TierStock>,
    /// Open holds: reservation id → numbers.
    pub holds: HashMap<TokenId, Numbers>,
}

impl Snapshot {
    /// Numbers held (reserved, not yet confirmed) per tier.
    pub fn held_per_tier(&self) -> HashMap<TierCode, i64> {
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
            snapshot.epoch = value.parse().ok();
            continue;
        }
        let Some((code, what)) = field.rsplit_once(':') else {
            continue;
        };
        let Some(code) = TierCode::parse(code) else {
            continue;
        };
        let n: i64 = value.parse().unwrap_or_default();
        let tier = snapshot.tiers.entry(code).or_default();
        match what {
            "cap" => tier.capacity = n,
            "next" => tier.next = n,
            "avail" => tier.available = n,
            "held" => tier.held = n,
            _ => {}
        }
    }
    for (jti, held) in parts.get(1).map(pairs).unwrap_or_default() {
        // Every reservation id is a token id; anything else is not a hold of this system.
        if let Ok(jti) = jti.parse() {
            snapshot.holds.insert(jti, parse_held(&held));
        }
    }
    Ok(snapshot)
}

/// Parses a hold's value, `<fingerprint>|<attempt>|VIP=1,2;GA=7`.
pub fn parse_held(held: &str) -> Numbers {
    let numbers = held.rsplit_once('|').map_or(held, |(_, numbers)| numbers);
    numbers
        .split(';')
        .filter_map(|part| part.split_once('='))
        .filter_map(|(code, list)| {
            let numbers = list.split(',').filter_map(|n| n.parse().ok()).collect();
            Some((TierCode::parse(code)?, numbers))
        })
        .collect()
}

/// The epoch of the event's inventory in Redis; None when it is not loaded.
pub async fn redis_epoch(redis: &RedisClient, event_id: Uuid) -> RedisResult<Option<Epoch>> {
    let epoch: Option<String> = redis::cmd("HGET")
        .arg(EventKeys::new(event_id).inventory())
        .arg("epoch")
        .query_async(&mut redis.clone())
        .await?;
    Ok(epoch.and_then(|e| e.parse().ok()))
}

/// Live availability per tier, or None when the event's inventory is not in Redis.
pub async fn availability(
    redis: &RedisClient,
    event_id: Uuid,
) -> RedisResult<Option<HashMap<TierCode, i64>>> {
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
                let code = TierCode::parse(field.strip_suffix(":avail")?)?;
                Some((code, value.parse().ok()?))
            })
            .collect(),
    ))
}

/// Whether the admission hold of `queue_id` (hold on admission) is still there: a rebuild drops
/// it, and a booking claims it.
pub async fn holds(redis: &RedisClient, event_id: Uuid, queue_id: QueueId) -> RedisResult<bool> {
    redis::cmd("HEXISTS")
        .arg(EventKeys::new(event_id).hold_numbers())
        .arg(admission_hold_id(queue_id))
        .query_async(&mut redis.clone())
        .await
}

/// Holds whose deadline passed by Redis's clock, at most 500, with the inventory's epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overdue {
    /// None when the event's inventory is not in Redis.
    pub epoch: Option<Epoch>,
    /// Admission holds (hold on admission): never written to Postgres.
    pub admission: Vec<TokenId>,
    /// Reservations of entry tokens: their write may have committed.
    pub reservations: Vec<TokenId>,
}

impl Overdue {
    pub fn is_empty(&self) -> bool {
        self.admission.is_empty() && self.reservations.is_empty()
    }
}

pub async fn overdue_holds(redis: &RedisClient, event_id: Uuid) -> RedisResult<Overdue> {
    let keys = EventKeys::new(event_id);
    let reply: Value = OVERDUE
        .key(keys.holds())
        .key(keys.hold_numbers())
        .key(keys.inventory())
        .arg(500)
        .invoke_async(&mut redis.clone())
        .await?;
    let items = array(&reply);
    let mut overdue = Overdue {
        epoch: items.first().and_then(text).and_then(|e| e.parse().ok()),
        ..Overdue::default()
    };
    for pair in items.get(1..).unwrap_or_default().chunks(2) {
        let (Some(id), Some(kind)) = (pair.first().and_then(text), pair.get(1).and_then(text))
        else {
            return Err(malformed("overdue_holds"));
        };
        // Every reservation id is a token id; anything else is not a hold of this system.
        let Ok(id) = id.parse() else { continue };
        if kind == "admission" {
            overdue.admission.push(id);
        } else {
            overdue.reservations.push(id);
        }
    }
    Ok(overdue)
}

/// One tier of an inventory rebuilt from Postgres.
#[derive(Debug, Clone)]
pub struct TierLoad {
    pub code: TierCode,
    pub capacity: i32,
    /// Numbers issued (sold and not cancelled).
    pub issued: std::collections::BTreeSet<i32>,
}

impl TierLoad {
    /// The highest number ever handed out that Postgres knows of; numbers above it are fresh.
    fn next(&self) -> i32 {
        self.issued.last().copied().unwrap_or(0)
    }

    /// Numbers at or below `next` that are not issued: they go back on sale.
    fn free(&self) -> impl Iterator<Item = i32> + '_ {
        (1..=self.next()).filter(|n| !self.issued.contains(n))
    }
}

/// Replaces the event's inventory with `tiers` under `epoch`: [`stage`], then [`switch`]. If this
/// fails before the switch, the live inventory is untouched and the staged keys expire.
pub async fn load(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: Epoch,
    tiers: &[TierLoad],
) -> RedisResult<()> {
    stage(redis, event_id, epoch, tiers).await?;
    switch(redis, event_id, epoch, tiers).await
}

/// Adds each tier's free numbers to keys named by `epoch`, in commands of at most
/// [`LOAD_CHUNK`] numbers each, so no single call blocks Redis for long.
pub async fn stage(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: Epoch,
    tiers: &[TierLoad],
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    for tier in tiers {
        let staged = keys.staged_free_numbers(epoch.0, &tier.code);
        let free: Vec<i32> = tier.free().collect();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&staged).ignore();
        for chunk in free.chunks(LOAD_CHUNK) {
            pipe.cmd("SADD").arg(&staged).arg(chunk).ignore();
        }
        pipe.cmd("EXPIRE").arg(&staged).arg(STAGE_TTL_S).ignore();
        let () = pipe.query_async(&mut redis.clone()).await?;
    }
    Ok(())
}

/// Makes the staged inventory of `epoch` the live one in one script, O(1) per tier, dropping
/// every hold and used token of the previous epoch. Refuses, changing nothing, when a staged
/// set is not complete.
pub async fn switch(
    redis: &RedisClient,
    event_id: Uuid,
    epoch: Epoch,
    tiers: &[TierLoad],
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    let mut switch = SWITCH.prepare_invoke();
    switch
        .key(keys.inventory())
        .key(keys.holds())
        .key(keys.hold_numbers())
        .key(keys.used_tokens())
        .arg(epoch);
    for tier in tiers {
        switch
            .key(keys.free_numbers(&tier.code))
            .key(keys.staged_free_numbers(epoch.0, &tier.code))
            .arg(&tier.code)
            .arg(tier.capacity)
            .arg(tier.next())
            .arg(tier.issued.len())
            .arg(tier.free().count());
    }
    let _: i64 = switch.invoke_async(&mut redis.clone()).await?;
    Ok(())
}
