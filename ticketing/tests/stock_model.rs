//! Property tests of stock-aware admission (issue 13): random sequences of joins, wishes,
//! admission steps, bookings (confirmed, abandoned, or cut off by a crash), leaves and token
//! expiries run the queue and inventory scripts together against a real Redis, with two tiers of
//! small capacity, a random headroom and hold on admission on or off. After every step the
//! accounting must add up: what admitted buyers count against each tier equals the sum of their
//! records, and every ticket is on sale, held or sold. Around every admission step: each buyer
//! admitted passed the gate as it stood at its turn (or, the step's first when nobody was admitted
//! for a while, passed as the probe: its tickets on sale now) and is recorded as the gate counts it (with
//! hold on admission, a buyer with a wish holds exactly that wish), nobody is admitted whose wish
//! cannot be met, and once every token has come back admission resumes. At the end, with everyone
//! gone and every deadline past, every hold has either become a booking or gone back on sale.
//!
//! The model is thin on purpose: Redis tells who stands where; the model knows only what Redis
//! cannot (what was sold, which crashed bookings reached Postgres) and what each case was set up
//! with. `Seen::gate` restates the rule of admit.lua's gate (`lua/admission/gate.lua`); change both together. Each case uses its own
//! event id and deletes its keys when it ends.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use redis::RedisError;
use ticketing::inventory::{
    self, admission_hold_id, Epoch, HoldFor, ReleaseMode, Released, Reservation,
};
use ticketing::keys::EventKeys;
use ticketing::queue::{
    self, admit::STEP_BOUND, Leaving, QueueId, Standing, Sync, WaitingRoom, Wish, WishSet,
};
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use ticketing::token::TokenId;
use uuid::Uuid;

const VISITORS: usize = 12;
const CODES: [&str; 2] = ["GA", "VIP"];
/// The inventory is set up directly under this epoch; nothing rebuilds it within a case.
const EPOCH: Epoch = Epoch(1);
const HOLD_MS: u64 = 60_000;
const FINGERPRINT: &str = "model";
const ATTEMPT: &str = "attempt-1";

/// What a case is set up with.
#[derive(Debug, Clone, Copy)]
struct Sale {
    /// GA, VIP.
    capacity: [i64; 2],
    headroom_pct: u32,
    hold_on_admission: bool,
}

/// How a booking ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Confirmed,
    /// The buyer gave up: the booking service releases the hold at once.
    Abandoned,
    /// The booking process died after reserving; `written` when its Postgres write went through,
    /// so the sweeper confirms the hold instead of returning it.
    Crashed {
        written: bool,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    /// An empty wish clears it.
    SetWish(usize, Wish),
    /// One admission step taking at most this many off the head; with `true`, nobody was
    /// admitted for longer than the gate's probe interval (so a probe is due).
    Admit(u32, bool),
    /// An admitted buyer books its wish, or `other` when it has none or `change_of_mind`.
    Book {
        pick: Index,
        other: Wish,
        change_of_mind: bool,
        outcome: Outcome,
    },
    Leave(usize),
    /// Every entry token and every hold runs out; the worker clears them and sweeps the holds.
    Expire,
}

/// A crashed booking's hold, left for the sweeper.
#[derive(Debug, Clone)]
struct Crashed {
    visitor: usize,
    tickets: BTreeMap<String, i64>,
    numbers: inventory::Numbers,
    written: bool,
}

/// What Redis cannot tell.
#[derive(Debug, Default)]
struct Model {
    /// Tickets confirmed per tier: numbers that left the inventory for good.
    sold: BTreeMap<String, i64>,
    crashed: BTreeMap<TokenId, Crashed>,
}

/// One admitted buyer's record (`ev:{E}:admw`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counted {
    /// `h|GA:2;VIP:1`: admission holds these; they count nothing against the stock.
    Held(Wish),
    /// `w|GA=200` (a wish) or `a|GA=200` (no wish, the sale's average): hundredths per tier.
    Demand {
        wish: bool,
        hundredths: BTreeMap<String, i64>,
    },
}

impl Counted {
    fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once('|')?;
        match kind {
            "h" => Some(Counted::Held(Wish::parse(&rest.replace(':', "=")))),
            "w" | "a" => {
                let mut hundredths = BTreeMap::new();
                for part in rest.split(';').filter(|p| !p.is_empty()) {
                    let (code, n) = part.split_once('=')?;
                    hundredths.insert(code.to_string(), n.parse().ok()?);
                }
                Some(Counted::Demand {
                    wish: kind == "w",
                    hundredths,
                })
            }
            _ => None,
        }
    }

    /// The wish the buyer was admitted with, if any.
    fn wish(&self) -> Option<Wish> {
        match self {
            Counted::Held(wish) => Some(wish.clone()),
            Counted::Demand {
                wish: true,
                hundredths,
            } => Some(Wish(
                hundredths
                    .iter()
                    .map(|(code, n)| (TierCode::known(code), (*n / 100) as u32))
                    .collect(),
            )),
            Counted::Demand { .. } => None,
        }
    }
}

/// One tier of the inventory hash, plus its free-number set's size.
#[derive(Debug, Clone, Copy, Default)]
struct Stock {
    cap: i64,
    next: i64,
    avail: i64,
    held: i64,
    free: i64,
}

/// Everything of the event Redis holds that the checks read, in one place.
#[derive(Debug, Default)]
struct Seen {
    /// Visitors in line, head first.
    wait: Vec<usize>,
    parked: BTreeSet<usize>,
    /// Admitted visitor → token expiry.
    admitted: BTreeMap<usize, i64>,
    wishes: BTreeMap<usize, Wish>,
    /// Raw queue id → admission record: raw, so a record of an id nobody holds shows up.
    admw: BTreeMap<Vec<u8>, String>,
    admd: BTreeMap<String, i64>,
    stock: BTreeMap<String, Stock>,
    /// Reservation id → deadline.
    holds: BTreeMap<String, i64>,
    /// Reservation id → held tickets per tier.
    holdv: BTreeMap<String, BTreeMap<String, i64>>,
    booked_total: i64,
    sold_stats: BTreeMap<String, i64>,
    /// Bookings with each tier (`buyers:<code>`).
    buyers_stats: BTreeMap<String, i64>,
    /// Bookings by tier and how many of it they took (`took:<code>:<n>`).
    took: BTreeMap<(String, i64), i64>,
    /// Nothing left nor held (confirm.lua sets it): admission stops, the line hears sold out.
    soldout: bool,
}

impl Seen {
    fn demand(&self, code: &str) -> i64 {
        self.admd.get(code).copied().unwrap_or(0)
    }

    fn stock(&self, code: &str) -> Stock {
        self.stock.get(code).copied().unwrap_or_default()
    }

    /// A tier of the wish has less left, held included, than wished: admission parks it.
    fn unmeetable(&self, wish: &Wish) -> bool {
        wish.0.iter().any(|(code, quantity)| {
            let stock = self.stock(code);
            stock.avail + stock.held < i64::from(*quantity)
        })
    }

    /// The sale's average tickets of `code` per booking, in hundredths (0 before the first
    /// booking): how admit.lua spreads a buyer without a wish over the tiers on sale.
    fn average(&self, code: &str) -> i64 {
        if self.booked_total == 0 {
            return 0;
        }
        let sold = self.sold_stats.get(code).copied().unwrap_or(0) as f64;
        (100.0 * sold / self.booked_total as f64 + 0.5).floor() as i64
    }

    /// The tickets one booking takes on average, in hundredths (2 before the first booking, at
    /// least 1): what admit.lua counts for a buyer without a wish, in all.
    fn per_booking(&self) -> i64 {
        if self.booked_total == 0 {
            return 200;
        }
        let sold: i64 = self.sold_stats.values().sum();
        ((100.0 * sold as f64 / self.booked_total as f64 + 0.5).floor() as i64).max(100)
    }

    /// The share of `code`'s tickets sold in bookings that took at most `left` of it, two
    /// average bookings in reach added as a prior, at least a tenth; 1 before any booking took
    /// it, or while some bookings are not in the counts (gate.lua `within_reach`).
    fn reach(&self, code: &str, left: i64) -> f64 {
        if self.booked_total == 0 || left <= 0 || left > 100 {
            return 1.0;
        }
        let (mut bookings, mut tickets, mut reached) = (0, 0, 0);
        for ((c, n), took) in &self.took {
            if c == code && *n <= 100 {
                bookings += took;
                tickets += n * took;
                if *n <= left {
                    reached += n * took;
                }
            }
        }
        if tickets == 0 || bookings < self.buyers_stats.get(code).copied().unwrap_or(0) {
            return 1.0;
        }
        // Two bookings of the average size, in reach, as a prior.
        let prior = 2.0 * tickets as f64 / bookings as f64;
        ((reached as f64 + prior) / (tickets as f64 + prior)).max(0.1)
    }

    /// What a buyer without a wish counts against each tier on sale (hundredths), and each
    /// tier's room for such buyers; None when nothing is on sale. One booking's tickets spread
    /// over the tiers on sale as the sale's bookings spread (by what is left when none of them
    /// has been booked yet), each share what such a buyer can still take of its tier and at most
    /// what is left; a tier's last tickets are offered to a booking's worth (of what can still
    /// be taken of it) more than they fill.
    fn nowish(
        &self,
        avail: &BTreeMap<String, i64>,
        sale: &Sale,
    ) -> Option<BTreeMap<&'static str, (i64, i64)>> {
        let of = |code: &str| avail.get(code).copied().unwrap_or(0);
        let headroom = 100 + i64::from(sale.headroom_pct);
        let on_sale: Vec<&str> = CODES.iter().copied().filter(|c| of(c) > 0).collect();
        if on_sale.is_empty() {
            return None;
        }
        let total = self.per_booking();
        let mut weights: Vec<i64> = on_sale.iter().map(|c| self.average(c)).collect();
        if weights.iter().sum::<i64>() == 0 {
            weights = on_sale.iter().map(|c| of(c)).collect();
        }
        let weight: i64 = weights.iter().sum();
        Some(
            on_sale
                .iter()
                .zip(&weights)
                .map(|(code, w)| {
                    let left = of(code);
                    let reach = self.reach(code, left);
                    let share = ((total as f64 * *w as f64 / weight as f64 * reach + 0.5).floor()
                        as i64)
                        .min(100 * left);
                    let room = (left * headroom)
                        .max(100 * left + (total as f64 * reach + 0.5).floor() as i64);
                    (*code, (share, room))
                })
                .collect(),
        )
    }

    /// admit.lua's gate for one entry at its turn, given the step's running admitted demand and
    /// stock: the record admission writes for it, or None when it must wait. A wish is gated per
    /// tier (held at once with hold on admission); a buyer without one may take any tier: it
    /// counts one booking's tickets spread over the tiers on sale as the sale's bookings spread,
    /// each share at most what is left of its tier and gated by that tier (its last tickets
    /// offered to a booking's worth more than they fill). Wishes that cannot be met at
    /// all park before this (`unmeetable`). A `probe` is gated by what is on sale only, not by
    /// what admitted buyers count.
    fn gate(
        &self,
        wish: Option<&Wish>,
        demand: &BTreeMap<String, i64>,
        avail: &BTreeMap<String, i64>,
        sale: &Sale,
        probe: bool,
    ) -> Option<Counted> {
        let headroom = 100 + i64::from(sale.headroom_pct);
        let of = |m: &BTreeMap<String, i64>, code: &str| m.get(code).copied().unwrap_or(0);
        if let Some(wish) = wish {
            let each = |ok: &dyn Fn(&str, i64) -> bool| {
                wish.0.iter().all(|(code, q)| ok(code, i64::from(*q)))
            };
            return if sale.hold_on_admission {
                each(&|code, q| of(avail, code) >= q).then(|| Counted::Held(wish.clone()))
            } else {
                each(&|code, q| {
                    if probe {
                        of(avail, code) >= q
                    } else {
                        of(demand, code) + 100 * q <= of(avail, code) * headroom
                    }
                })
                .then(|| Counted::Demand {
                    wish: true,
                    hundredths: tickets(wish)
                        .into_iter()
                        .map(|(c, q)| (c, 100 * q))
                        .collect(),
                })
            };
        }
        let mut hundredths = BTreeMap::new();
        for (code, (share, room_for)) in self.nowish(avail, sale)? {
            // Each tier gates its own share.
            if !probe && share > 0 && of(demand, code) + share > room_for {
                return None;
            }
            // Zero shares are not recorded.
            if share > 0 {
                hundredths.insert(code.to_string(), share);
            }
        }
        Some(Counted::Demand {
            wish: false,
            hundredths,
        })
    }

    fn avail(&self) -> BTreeMap<String, i64> {
        self.stock
            .iter()
            .map(|(c, s)| (c.clone(), s.avail))
            .collect()
    }

    /// Whether the head of the line, with nobody admitted, would be let in.
    fn servable(&self, wish: Option<&Wish>, sale: &Sale) -> bool {
        !wish.is_some_and(|w| self.unmeetable(w))
            && self
                .gate(wish, &BTreeMap::new(), &self.avail(), sale, false)
                .is_some()
    }
}

struct Case {
    redis: RedisClient,
    event_id: Uuid,
    keys: EventKeys,
    ids: Vec<QueueId>,
    sale: Sale,
    model: Model,
}

fn fail(e: RedisError) -> TestCaseError {
    TestCaseError::fail(format!("redis: {e}"))
}

fn codes() -> Vec<TierCode> {
    CODES.iter().map(|c| TierCode::known(c)).collect()
}

fn tickets(wish: &Wish) -> BTreeMap<String, i64> {
    wish.0
        .iter()
        .map(|(code, q)| (code.to_string(), i64::from(*q)))
        .collect()
}

/// 1–3 tickets over one or both tiers.
fn request() -> impl Strategy<Value = Wish> {
    let one =
        (0..CODES.len(), 1u32..=3).prop_map(|(t, q)| Wish(vec![(TierCode::known(CODES[t]), q)]));
    let both = prop_oneof![Just((1, 1)), Just((1, 2)), Just((2, 1))].prop_map(|(ga, vip)| {
        Wish(vec![
            (TierCode::known("GA"), ga),
            (TierCode::known("VIP"), vip),
        ])
    });
    prop_oneof![2 => one, 1 => both]
}

fn wish() -> impl Strategy<Value = Wish> {
    prop_oneof![1 => Just(Wish::default()), 4 => request()]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Confirmed),
        2 => Just(Outcome::Abandoned),
        1 => any::<bool>().prop_map(|written| Outcome::Crashed { written }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..VISITORS).prop_map(Op::Join),
        3 => (0..VISITORS, wish()).prop_map(|(v, w)| Op::SetWish(v, w)),
        4 => (
            prop_oneof![3 => 1u32..=4, 1 => Just(STEP_BOUND)],
            proptest::bool::weighted(0.3)
        )
            .prop_map(|(bound, probe_due)| Op::Admit(bound, probe_due)),
        4 => (any::<Index>(), request(), proptest::bool::weighted(0.2), outcome()).prop_map(
            |(pick, other, change_of_mind, outcome)| Op::Book {
                pick,
                other,
                change_of_mind,
                outcome
            }
        ),
        1 => (0..VISITORS).prop_map(Op::Leave),
        1 => Just(Op::Expire),
    ]
}

fn sale() -> impl Strategy<Value = Sale> {
    (
        3i64..=12,
        3i64..=12,
        prop_oneof![Just(0u32), Just(10), Just(50)],
        any::<bool>(),
    )
        .prop_map(|(ga, vip, headroom_pct, hold_on_admission)| Sale {
            capacity: [ga, vip],
            headroom_pct,
            hold_on_admission,
        })
}

impl Case {
    async fn set_up(&self) -> Result<(), TestCaseError> {
        // The inventory as a rebuild would leave it with nothing sold: every number fresh.
        let mut fields: Vec<(String, i64)> = vec![("epoch".into(), EPOCH.0), ("soldout".into(), 0)];
        for (code, cap) in CODES.iter().zip(self.sale.capacity) {
            fields.push((format!("{code}:cap"), cap));
            fields.push((format!("{code}:next"), 0));
            fields.push((format!("{code}:avail"), cap));
            fields.push((format!("{code}:held"), 0));
        }
        redis::cmd("HSET")
            .arg(self.keys.inventory())
            .arg(&fields[..])
            .query_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        let room = WaitingRoom {
            enabled: true,
            admission_per_minute: 1_000_000,
            max_active: 1_000_000,
            paused: false,
            token_ttl_s: 600,
            drain_per_minute: 0,
            headroom_pct: self.sale.headroom_pct,
            hold_on_admission: self.sale.hold_on_admission,
            adaptive: None,
        };
        // On sale a minute ago: every join stands in line, waiting.
        let on_sale_ms = chrono::Utc::now().timestamp_millis() - 60_000;
        queue::sync_config(
            &self.redis,
            self.event_id,
            &room,
            on_sale_ms,
            Sync::Settings,
        )
        .await
        .map_err(fail)
    }

    fn visitor(&self, raw: &[u8]) -> Result<usize, TestCaseError> {
        self.ids
            .iter()
            .position(|q| q.as_bytes().as_slice() == raw)
            .ok_or_else(|| TestCaseError::fail(format!("an id no visitor holds: {raw:?}")))
    }

    async fn read(&self) -> Result<Seen, TestCaseError> {
        let conn = self.redis.clone();
        let keys = &self.keys;
        let zrange = |key: String| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async::<Vec<(Vec<u8>, f64)>>(&mut conn)
                    .await
                    .map_err(fail)
            }
        };
        let hgetall = |key: String| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<BTreeMap<Vec<u8>, String>>(&mut conn)
                    .await
                    .map_err(fail)
            }
        };
        let text = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();

        let mut seen = Seen::default();
        for (id, _) in zrange(keys.waiting()).await? {
            seen.wait.push(self.visitor(&id)?);
        }
        for (id, _) in zrange(keys.parked()).await? {
            seen.parked.insert(self.visitor(&id)?);
        }
        for (id, expiry) in zrange(keys.admitted()).await? {
            seen.admitted.insert(self.visitor(&id)?, expiry as i64);
        }
        for (id, wish) in hgetall(keys.wishes()).await? {
            seen.wishes.insert(self.visitor(&id)?, Wish::parse(&wish));
        }
        seen.admw = hgetall(keys.admitted_demand()).await?;
        for (code, n) in hgetall(keys.demand()).await? {
            seen.admd.insert(text(&code), n.parse().unwrap_or(i64::MIN));
        }
        let inv = hgetall(keys.inventory()).await?;
        seen.soldout = inv.get(b"soldout".as_slice()).map(String::as_str) == Some("1");
        for code in CODES {
            let field = |what: &str| {
                inv.get(format!("{code}:{what}").as_bytes())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let free: i64 = redis::cmd("SCARD")
                .arg(keys.free_numbers(code))
                .query_async(&mut conn.clone())
                .await
                .map_err(fail)?;
            seen.stock.insert(
                code.to_string(),
                Stock {
                    cap: field("cap"),
                    next: field("next"),
                    avail: field("avail"),
                    held: field("held"),
                    free,
                },
            );
        }
        for (id, deadline) in zrange(keys.holds()).await? {
            seen.holds.insert(text(&id), deadline as i64);
        }
        for (id, value) in hgetall(keys.hold_numbers()).await? {
            let counts = inventory::parse_held(&value)
                .into_iter()
                .map(|(code, numbers)| (code.to_string(), numbers.len() as i64))
                .collect();
            seen.holdv.insert(text(&id), counts);
        }
        let stats = hgetall(keys.stats()).await?;
        seen.booked_total = stats
            .get(b"booked_total".as_slice())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        for code in CODES {
            let sold = stats
                .get(format!("sold:{code}").as_bytes())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            seen.sold_stats.insert(code.to_string(), sold);
            let buyers = stats
                .get(format!("buyers:{code}").as_bytes())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            seen.buyers_stats.insert(code.to_string(), buyers);
        }
        for (field, value) in &stats {
            let field = text(field);
            if let Some((code, n)) = field
                .strip_prefix("took:")
                .and_then(|rest| rest.split_once(':'))
            {
                let bad = || TestCaseError::fail(format!("stats field {field}: {value}"));
                let n: i64 = n.parse().map_err(|_| bad())?;
                let bookings: i64 = value.parse().map_err(|_| bad())?;
                seen.took.insert((code.to_string(), n), bookings);
            }
        }
        Ok(seen)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Join(v) => {
                let standing = queue::join(&self.redis, self.event_id, self.ids[*v], 1, &codes())
                    .await
                    .map_err(fail)?;
                prop_assert!(
                    matches!(
                        standing,
                        Standing::Waiting { .. } | Standing::Admitted { .. } | Standing::SoldOut
                    ),
                    "a join after the opening answered {:?}",
                    standing
                );
                Ok(())
            }
            Op::SetWish(v, wish) => {
                let before = self.read().await?;
                let set = queue::set_wish(&self.redis, self.event_id, self.ids[*v], wish, &codes())
                    .await
                    .map_err(fail)?;
                let in_line = before.wait.contains(v) || before.parked.contains(v);
                match set {
                    WishSet::Set => prop_assert!(in_line && !before.unmeetable(wish)),
                    WishSet::Short(_) => prop_assert!(in_line && before.unmeetable(wish)),
                    WishSet::NotWaiting => prop_assert!(before.admitted.contains_key(v)),
                    WishSet::NotFound => prop_assert!(!in_line),
                }
                Ok(())
            }
            Op::Admit(bound, probe_due) => self.admit(*bound, *probe_due).await,
            Op::Book {
                pick,
                other,
                change_of_mind,
                outcome,
            } => self.book(pick, other, *change_of_mind, *outcome).await,
            Op::Leave(v) => {
                queue::leave(
                    &self.redis,
                    self.event_id,
                    self.ids[*v],
                    Leaving::Now,
                    &codes(),
                )
                .await
                .map_err(fail)?;
                Ok(())
            }
            Op::Expire => self.expire().await,
        }
    }

    /// One admission step, with the gate checked around it (invariants 2 and 4). With
    /// `probe_due`, the last admission is set long ago, so the gate may let one held-back entry
    /// in as a probe; without, it is set in the future, so none is due.
    async fn admit(&mut self, bound: u32, probe_due: bool) -> Result<(), TestCaseError> {
        // The rate is not what this model is about: full buckets, so only the stock (and the
        // bound) decide. Both of them: once a tier every booking took is gone, buyers without a
        // wish draw on a bucket of their own (lib/conversion.lua's history share), and a case
        // that left it empty would wait for its refill, not for the stock.
        redis::cmd("HSET")
            .arg(self.keys.admission_bucket())
            .arg("tokens")
            .arg(1_000_000_000)
            .arg("nw_tokens")
            .arg(1_000_000_000)
            .query_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        redis::cmd("HSET")
            .arg(self.keys.stats())
            .arg("last_admit_ms")
            .arg(if probe_due { 0i64 } else { i64::MAX / 2 })
            .query_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        let before = self.read().await?;
        let step = queue::admit(&self.redis, self.event_id, bound, &codes())
            .await
            .map_err(fail)?;
        let after = self.read().await?;
        prop_assert_eq!(
            step.dropped,
            0,
            "everyone joined within the liveness window"
        );

        let admitted: Vec<usize> = before
            .wait
            .iter()
            .copied()
            .filter(|v| after.admitted.contains_key(v))
            .collect();
        let parked: Vec<usize> = before
            .wait
            .iter()
            .copied()
            .filter(|v| after.parked.contains(v))
            .collect();
        prop_assert_eq!(
            step.admitted,
            admitted.len() as i64,
            "admitted from the line"
        );
        prop_assert_eq!(step.parked, parked.len() as i64, "parked from the line");
        prop_assert!(
            admitted.len() + parked.len() <= bound as usize,
            "the step took {} and parked {} over its bound {}",
            admitted.len(),
            parked.len(),
            bound
        );
        for v in after.admitted.keys() {
            prop_assert!(
                before.admitted.contains_key(v) || before.wait.contains(v),
                "visitor {} admitted from outside the line",
                v
            );
        }

        // Invariant 4: a wish that cannot be met parks its entry and never admits it; only such
        // entries park. Holds only move tickets from avail to held, so avail + held is the same
        // throughout the step.
        if before.soldout {
            prop_assert_eq!(
                (step.admitted, step.parked),
                (0, 0),
                "a sold-out event admits and parks nobody"
            );
        }
        let examined_all = before.wait.len() <= bound as usize && !before.soldout;
        for v in &before.wait {
            let Some(wish) = before.wishes.get(v) else {
                prop_assert!(!parked.contains(v), "visitor {} parked without a wish", v);
                continue;
            };
            if before.unmeetable(wish) {
                prop_assert!(
                    !admitted.contains(v),
                    "visitor {} admitted with wish {:?}, more than left (avail + held) in {:?}",
                    v,
                    wish,
                    before.stock
                );
                if examined_all {
                    prop_assert!(
                        parked.contains(v),
                        "visitor {} with wish {:?} not parked though the step saw the whole \
                         line; stock {:?}",
                        v,
                        wish,
                        before.stock
                    );
                }
            } else {
                prop_assert!(
                    !parked.contains(v),
                    "visitor {} parked with wish {:?} that can be met; stock {:?}",
                    v,
                    wish,
                    before.stock
                );
            }
        }

        // Invariant 2: in line order, every buyer admitted in this step passed the gate as it
        // stood at its turn (what the step's expiries freed, minus what earlier admissions in
        // the step took), and its record is what the gate counts; with hold on admission, a
        // buyer with a wish holds exactly that wish until its token expires.
        let mut demand: BTreeMap<String, i64> = CODES
            .iter()
            .map(|c| (c.to_string(), before.demand(c)))
            .collect();
        for (v, _) in before
            .admitted
            .iter()
            .filter(|(v, _)| !after.admitted.contains_key(v))
        {
            let record = before
                .admw
                .get(self.ids[*v].as_bytes().as_slice())
                .and_then(|r| Counted::parse(r));
            if let Some(Counted::Demand { hundredths, .. }) = record {
                for (code, n) in hundredths {
                    *demand.entry(code).or_insert(0) -= n;
                }
            }
        }
        let mut avail = before.avail();
        // At a tier's last tickets (at most 100 left, counted past what is left, or buyers
        // without a wish wanting more than is left) each buyer still admitted counts at most
        // what is left of it, and one without a wish at most what such a buyer can take of it
        // now, read from the records (gate.lua `capped_demand`).
        let nowish = before.nowish(&avail, &self.sale).unwrap_or_default();
        for code in CODES {
            let left = avail.get(code).copied().unwrap_or(0);
            if left <= 0
                || left > 100
                || (demand.get(code).copied().unwrap_or(0) <= left * 100
                    && before.reach(code, left) >= 1.0)
            {
                continue;
            }
            let nowish_share = nowish.get(code).map_or(0, |(share, _)| *share);
            let capped =
                before
                    .admitted
                    .keys()
                    .filter(|v| after.admitted.contains_key(v))
                    .filter_map(|v| before.admw.get(self.ids[*v].as_bytes().as_slice()))
                    .filter_map(|r| match Counted::parse(r) {
                        Some(Counted::Demand { wish, hundredths }) => hundredths
                            .get(code)
                            .map(|n| if wish { *n } else { (*n).min(nowish_share) }),
                        _ => None,
                    })
                    .map(|n| n.min(left * 100))
                    .sum();
            demand.insert(code.to_string(), capped);
        }
        for (turn, v) in admitted.iter().enumerate() {
            let qid = self.ids[*v];
            let record = after
                .admw
                .get(qid.as_bytes().as_slice())
                .and_then(|r| Counted::parse(r));
            let wish = before.wishes.get(v);
            // The step's first admission may be the probe, when one is due and the gate held
            // this entry back.
            let expected = before
                .gate(wish, &demand, &avail, &self.sale, false)
                .or_else(|| {
                    (probe_due && turn == 0)
                        .then(|| before.gate(wish, &demand, &avail, &self.sale, true))
                        .flatten()
                });
            prop_assert_eq!(
                &record,
                &expected,
                "visitor {} with wish {:?} admitted (or recorded) against the gate: at its turn \
                 admitted demand {:?}, avail {:?}, headroom {}%",
                v,
                wish,
                &demand,
                &avail,
                self.sale.headroom_pct
            );
            match record {
                Some(Counted::Held(held)) => {
                    let hold_id = admission_hold_id(qid).to_string();
                    prop_assert_eq!(
                        after.holdv.get(&hold_id),
                        Some(&tickets(&held)),
                        "visitor {} admitted with wish {:?} holds otherwise",
                        v,
                        held
                    );
                    prop_assert_eq!(
                        after.holds.get(&hold_id),
                        after.admitted.get(v),
                        "the admission hold of {} lasts as long as its token",
                        v
                    );
                    for (code, q) in tickets(&held) {
                        *avail.entry(code).or_insert(0) -= q;
                    }
                }
                Some(Counted::Demand { hundredths, .. }) => {
                    for (code, n) in hundredths {
                        *demand.entry(code).or_insert(0) += n;
                    }
                }
                None => {}
            }
        }
        prop_assert_eq!(
            avail,
            after.avail(),
            "the stock after the step's admission holds"
        );
        Ok(())
    }

    async fn book(
        &mut self,
        pick: &Index,
        other: &Wish,
        change_of_mind: bool,
        outcome: Outcome,
    ) -> Result<(), TestCaseError> {
        let seen = self.read().await?;
        if seen.admitted.is_empty() {
            return Ok(());
        }
        let visitors: Vec<usize> = seen.admitted.keys().copied().collect();
        let v = visitors[pick.index(visitors.len())];
        let qid = self.ids[v];
        let record = seen
            .admw
            .get(qid.as_bytes().as_slice())
            .and_then(|r| Counted::parse(r));
        let admitted_wish = record.as_ref().and_then(Counted::wish);
        let request = match (&admitted_wish, change_of_mind) {
            (Some(wish), false) => wish.clone(),
            _ => other.clone(),
        };
        let jti = TokenId::new_v4();
        let mut holder = HoldFor {
            fingerprint: FINGERPRINT,
            attempt: ATTEMPT,
            claim: Some(qid),
        };
        let reserve = |holder: HoldFor<'static>| {
            let (redis, event_id, request) = (self.redis.clone(), self.event_id, request.0.clone());
            async move {
                inventory::reserve(&redis, event_id, jti, HOLD_MS, holder, &request)
                    .await
                    .map_err(fail)
            }
        };
        let mut reservation = reserve(holder).await?;
        if let Reservation::ClaimDiffers(epoch) = reservation {
            // As booking/src/checkout.rs: the admission hold goes back on sale, then a plain
            // reservation.
            let released = inventory::release(
                &self.redis,
                self.event_id,
                epoch,
                admission_hold_id(qid),
                Some(inventory::ADMISSION_ATTEMPT),
                ReleaseMode::Return,
                &codes(),
            )
            .await
            .map_err(fail)?;
            prop_assert_eq!(released, Released::Released, "the admission hold of {}", v);
            holder.claim = None;
            reservation = reserve(holder).await?;
        }
        let claimable = matches!(&record, Some(Counted::Held(_)))
            && seen.holdv.contains_key(&admission_hold_id(qid).to_string());
        let numbers = match reservation {
            Reservation::Held { epoch, numbers, .. } => {
                prop_assert_eq!(epoch, EPOCH);
                numbers
            }
            Reservation::Short { .. } => {
                // A buyer whose wish admission holds never finds it sold out.
                prop_assert!(
                    !(claimable
                        && tickets(&request) == tickets(&admitted_wish.unwrap_or_default())),
                    "visitor {} held {:?} on admission, yet booking it fell short",
                    v,
                    request
                );
                return Ok(());
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "reserving {request:?} for visitor {v}: {other:?}"
                )))
            }
        };
        let got: BTreeMap<String, i64> = numbers
            .iter()
            .map(|(code, list)| (code.to_string(), list.len() as i64))
            .collect();
        prop_assert_eq!(
            &got,
            &tickets(&request),
            "numbers reserved for {:?}",
            request
        );
        match outcome {
            Outcome::Confirmed => {
                inventory::confirm(&self.redis, self.event_id, jti, qid, &numbers, &codes())
                    .await
                    .map_err(fail)?;
                self.sell(&got);
            }
            Outcome::Abandoned => {
                let released = inventory::release(
                    &self.redis,
                    self.event_id,
                    EPOCH,
                    jti,
                    Some(ATTEMPT),
                    ReleaseMode::Return,
                    &codes(),
                )
                .await
                .map_err(fail)?;
                prop_assert_eq!(released, Released::Released);
            }
            Outcome::Crashed { written } => {
                self.model.crashed.insert(
                    jti,
                    Crashed {
                        visitor: v,
                        tickets: got,
                        numbers,
                        written,
                    },
                );
            }
        }
        Ok(())
    }

    fn sell(&mut self, tickets: &BTreeMap<String, i64>) {
        for (code, n) in tickets {
            *self.model.sold.entry(code.clone()).or_insert(0) += n;
        }
    }

    /// Every token and every hold runs out (a booking hold is shorter than the token it came
    /// with); the worker's admission step clears the tokens, its sweeper the holds. Then, with
    /// nobody admitted, admission must resume for a head it can serve (invariant 5).
    async fn expire(&mut self) -> Result<(), TestCaseError> {
        let seen = self.read().await?;
        let mut conn = self.redis.clone();
        for v in seen.admitted.keys() {
            redis::cmd("ZADD")
                .arg(self.keys.admitted())
                .arg("XX")
                .arg(0)
                .arg(self.ids[*v])
                .query_async::<i64>(&mut conn)
                .await
                .map_err(fail)?;
        }
        for id in seen.holds.keys() {
            redis::cmd("ZADD")
                .arg(self.keys.holds())
                .arg("XX")
                .arg(0)
                .arg(id)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(fail)?;
        }
        self.admit(STEP_BOUND, false).await?;
        self.check().await?;
        self.sweep().await?;
        self.check().await?;

        let seen = self.read().await?;
        let nobody = seen.admitted.is_empty() && CODES.iter().all(|c| seen.demand(c) == 0);
        if let (true, Some(&head)) = (nobody, seen.wait.first()) {
            if seen.servable(seen.wishes.get(&head), &self.sale) {
                self.admit(STEP_BOUND, false).await?;
                let after = self.read().await?;
                prop_assert!(
                    after.admitted.contains_key(&head),
                    "admission did not resume: nobody admitted, head {} with wish {:?} can be \
                     served from {:?} (sold {:?}, booked {}), yet still {}",
                    head,
                    seen.wishes.get(&head),
                    seen.stock,
                    seen.sold_stats,
                    seen.booked_total,
                    if after.parked.contains(&head) {
                        "parked"
                    } else {
                        "waiting"
                    }
                );
            }
        }
        Ok(())
    }

    /// As queue-worker/src/jobs/holds.rs: an overdue hold Postgres has a booking for is
    /// confirmed, any other goes back on sale.
    async fn sweep(&mut self) -> Result<(), TestCaseError> {
        let overdue = inventory::overdue_holds(&self.redis, self.event_id)
            .await
            .map_err(fail)?;
        for jti in overdue.admission.into_iter().chain(overdue.reservations) {
            match self.model.crashed.remove(&jti) {
                Some(Crashed {
                    visitor,
                    tickets,
                    numbers,
                    written: true,
                }) => {
                    let (qid, codes) = (self.ids[visitor], codes());
                    inventory::confirm(&self.redis, self.event_id, jti, qid, &numbers, &codes)
                        .await
                        .map_err(fail)?;
                    self.sell(&tickets);
                }
                _ => {
                    let released = inventory::release(
                        &self.redis,
                        self.event_id,
                        EPOCH,
                        jti,
                        None,
                        ReleaseMode::Return,
                        &codes(),
                    )
                    .await
                    .map_err(fail)?;
                    prop_assert_eq!(released, Released::Released, "overdue hold {}", jti);
                }
            }
        }
        Ok(())
    }

    /// What must hold after every step: the line's sets are apart, the admitted demand adds up
    /// (invariant 1), every ticket is on sale, held or sold (invariant 3).
    async fn check(&self) -> Result<(), TestCaseError> {
        let seen = self.read().await?;
        for v in &seen.wait {
            prop_assert!(
                !seen.parked.contains(v) && !seen.admitted.contains_key(v),
                "visitor {} both in line and parked or admitted",
                v
            );
        }

        // 1. Accounting.
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for (raw, record) in &seen.admw {
            let v = self.visitor(raw)?;
            prop_assert!(
                seen.admitted.contains_key(&v),
                "visitor {} has an admission record {:?} but is not admitted",
                v,
                record
            );
            match Counted::parse(record) {
                Some(Counted::Held(_)) => {}
                Some(Counted::Demand { hundredths, .. }) => {
                    for (code, n) in hundredths {
                        *sums.entry(code).or_insert(0) += n;
                    }
                }
                None => {
                    return Err(TestCaseError::fail(format!(
                        "visitor {v}: unreadable admission record {record:?}"
                    )))
                }
            }
        }
        for code in CODES {
            prop_assert_eq!(
                seen.demand(code),
                sums.get(code).copied().unwrap_or(0),
                "admitted demand of {} against the records {:?}",
                code,
                seen.admw.values().collect::<Vec<_>>()
            );
        }

        // 3. Conservation.
        let ids: BTreeSet<&String> = seen.holds.keys().collect();
        prop_assert_eq!(
            ids,
            seen.holdv.keys().collect::<BTreeSet<_>>(),
            "every hold has a deadline and numbers"
        );
        for (i, code) in CODES.iter().enumerate() {
            let stock = seen.stock(code);
            let sold = self.model.sold.get(*code).copied().unwrap_or(0);
            let held: i64 = seen.holdv.values().filter_map(|h| h.get(*code)).sum();
            prop_assert_eq!(stock.cap, self.sale.capacity[i]);
            prop_assert!(stock.avail >= 0 && stock.held >= 0, "{} {:?}", code, stock);
            prop_assert_eq!(
                stock.cap,
                stock.avail + stock.held + sold,
                "{}: cap = avail + held + sold ({} sold); {:?}",
                code,
                sold,
                stock
            );
            prop_assert_eq!(stock.held, held, "{}: held against the open holds", code);
            prop_assert_eq!(
                stock.avail,
                stock.cap - stock.next + stock.free,
                "{}: avail = cap - next + |free|",
                code
            );
        }
        Ok(())
    }

    /// Invariant 6: everyone leaves, every deadline passes, the sweeper runs: every hold has
    /// become a booking or gone back on sale.
    async fn finish(&mut self) -> Result<(), TestCaseError> {
        for id in &self.ids {
            queue::leave(&self.redis, self.event_id, *id, Leaving::Now, &codes())
                .await
                .map_err(fail)?;
        }
        self.expire().await?;
        self.check().await?;
        let seen = self.read().await?;
        prop_assert!(seen.holds.is_empty(), "holds left: {:?}", seen.holdv);
        prop_assert!(seen.admitted.is_empty() && seen.admw.is_empty());
        prop_assert!(self.model.crashed.is_empty(), "crashed holds never swept");
        for (i, code) in CODES.iter().enumerate() {
            let stock = seen.stock(code);
            let sold = self.model.sold.get(*code).copied().unwrap_or(0);
            prop_assert_eq!(stock.held, 0, "{} still held", code);
            prop_assert_eq!(stock.avail + sold, self.sale.capacity[i], "{}", code);
            prop_assert_eq!(seen.demand(code), 0, "{} demand left", code);
        }
        Ok(())
    }

    async fn delete_keys(&self) -> Result<(), RedisError> {
        support::delete_event_keys(&self.redis, self.event_id).await
    }
}

async fn run(sale: Sale, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .map_err(|e| TestCaseError::fail(format!("connecting to redis: {e}")))?;
    let event_id = Uuid::new_v4();
    let mut case = Case {
        redis,
        event_id,
        keys: EventKeys::new(event_id),
        ids: (0..VISITORS).map(|_| QueueId(Uuid::new_v4())).collect(),
        sale,
        model: Model::default(),
    };
    let outcome = async {
        case.set_up().await?;
        for (step, op) in ops.iter().enumerate() {
            let applied = async {
                case.apply(op).await?;
                case.check().await
            };
            applied
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
        }
        case.finish()
            .await
            .map_err(|e| TestCaseError::fail(format!("at the end: {e}")))
    }
    .await;
    case.delete_keys().await.map_err(fail)?;
    outcome
}

/// The shortest way into the zero-share record: after a first booking of GA only, a buyer
/// without a wish counts the sale's average, `VIP=0`; the scripts that take a record back
/// (leave, confirm, an expiry in admit) must cope with a zero.
async fn zero_share(case: &mut Case) -> Result<(), TestCaseError> {
    case.set_up().await?;
    let ga_once = Wish(vec![(TierCode::known("GA"), 1)]);
    // Visitor 0 is the only one admitted when it books: any index picks it.
    let first = any::<Index>()
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .map_err(TestCaseError::fail)?
        .current();
    let ops = [
        Op::Join(0),
        Op::Admit(STEP_BOUND, false),
        Op::Book {
            pick: first,
            other: ga_once,
            change_of_mind: true,
            outcome: Outcome::Confirmed,
        },
        Op::Join(1),
        Op::Admit(STEP_BOUND, false),
        Op::Leave(1),
    ];
    for (step, op) in ops.iter().enumerate() {
        let applied = async {
            case.apply(op).await?;
            case.check().await
        };
        applied
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
    }
    case.finish().await
}

#[test]
fn a_buyer_counted_at_a_zero_average_share_can_leave() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let redis = RedisClient::connect_single(&support::redis_url())
            .await
            .expect("connecting to redis");
        let event_id = Uuid::new_v4();
        let mut case = Case {
            redis,
            event_id,
            keys: EventKeys::new(event_id),
            ids: (0..VISITORS).map(|_| QueueId(Uuid::new_v4())).collect(),
            sale: Sale {
                capacity: [3, 3],
                headroom_pct: 10,
                hold_on_admission: false,
            },
            model: Model::default(),
        };
        let outcome = zero_share(&mut case).await;
        case.delete_keys().await.expect("deleting the case's keys");
        if let Err(e) = outcome {
            panic!("{e}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn admission_keeps_within_the_stock_and_every_hold_books_or_returns(
        sale in sale(),
        ops in proptest::collection::vec(op(), 30..80),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for one case");
        runtime.block_on(run(sale, ops))?;
    }
}
